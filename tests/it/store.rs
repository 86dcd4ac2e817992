//! The store suite: the same checks against SQLite and PostgreSQL.

use std::sync::Arc;

use billrun::domain::close::{Step, StepEffects};
use billrun::domain::invoice::{Document, DocumentKind, Line, LineKind};
use billrun::domain::job::{Job, JobStatus};
use billrun::domain::model::{Event, World};
use billrun::domain::money::Currency;
use billrun::domain::words::CompanyId;
use billrun::fixture::Fixture;
use billrun::jobs::intake::{Intake, Taken, USAGE_CHUNK, take_in};
use billrun::jobs::{DueOptions, run_due};
use billrun::store::{
    CommitOutcome, EventBatch, IntakeJudge, IntakeOutcome, IntakeRequest, IntakeSnapshot,
    RecordedEvent, StepRun, Store, UsageBatch, latest_closes,
};
use billrun::with_store;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::support::{TestDb, fixture};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn each_backend<F>(f: F)
where
    F: AsyncFn(&TestDb, &billrun::store::AnyStore),
{
    for db in TestDb::all().await {
        let store = db.store().await;
        f(&db, &store).await;
    }
}

#[tokio::test]
async fn master_data_round_trips() {
    let fx = Fixture::read(&fixture("demo")).unwrap();
    each_backend(async |db, store| {
        with_store!(store, s => {
            s.migrate().await.unwrap();
            s.migrate().await.unwrap(); // idempotent
            s.save_world(&fx.world).await.unwrap();
            assert_eq!(s.world().await.unwrap(), fx.world, "{}", db.backend);
            // Saving again replaces, never duplicates.
            s.save_world(&fx.world).await.unwrap();
            assert_eq!(s.world().await.unwrap(), fx.world, "{}", db.backend);
        });
    })
    .await;
}

#[tokio::test]
async fn master_data_of_more_companies_than_one_statement_takes_round_trips() {
    // A load replaces its companies a chunk of 500 at a time: 1,201 companies make three.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gen");
    billrun::synthetic::generate(
        billrun::synthetic::GenOptions {
            companies: 1201,
            events: 10,
            seed: 5,
        },
        &out,
    )
    .unwrap();
    let fx = Fixture::read(&out).unwrap();
    assert_eq!(fx.world.companies.len(), 1201);
    each_backend(async |db, store| {
        with_store!(store, s => {
            s.migrate().await.unwrap();
            s.save_world(&fx.world).await.unwrap();
            assert_eq!(s.world().await.unwrap(), fx.world, "{}", db.backend);
            s.save_world(&fx.world).await.unwrap();
            assert_eq!(s.world().await.unwrap(), fx.world, "{}", db.backend);
            // A close reads the master data of its chunk only: the same, company for company,
            // as the whole world's, and nothing of any other company. 600 companies are two
            // statements' worth.
            let ids: Vec<CompanyId> = fx.world.companies.keys().cloned().collect();
            for part in [&ids[..1], &ids[700..701], &ids[..128], &ids[300..900]] {
                let got = s.world_of(Some(part)).await.unwrap();
                assert_same_master_data(&got, &fx.world, part, db.backend);
            }
            assert_eq!(s.companies().await.unwrap(), fx.world.companies, "{}", db.backend);
        });
    })
    .await;
}

/// `got` holds what `whole` holds of `companies`, in the same order, and nothing else.
fn assert_same_master_data(got: &World, whole: &World, companies: &[CompanyId], backend: &str) {
    let ids: Vec<&CompanyId> = got.companies.keys().collect();
    assert_eq!(ids, companies.iter().collect::<Vec<_>>(), "{backend}");
    for c in companies {
        assert_eq!(got.companies[c], whole.companies[c], "{backend} {c}");
        let c = c.as_str();
        // Each per-company list, item for item.
        macro_rules! same {
            ($($list:ident),*) => {$(
                assert_eq!(
                    got.$list(c).collect::<Vec<_>>(),
                    whole.$list(c).collect::<Vec<_>>(),
                    "{backend} {c} {}", stringify!($list)
                );
            )*};
        }
        same!(offices_of, parties_of, pools_of, bundles_of, allowances_of);
        let admins = |w: &World| -> Vec<_> {
            w.admins
                .iter()
                .filter(|a| a.company.as_str() == c)
                .cloned()
                .collect()
        };
        assert_eq!(admins(got), admins(whole), "{backend} {c}");
    }
    let held = |company: &CompanyId| companies.contains(company);
    assert!(got.offices.iter().all(|o| held(&o.company)), "{backend}");
    assert!(got.parties.iter().all(|p| held(&p.company)), "{backend}");
    assert!(got.admins.iter().all(|a| held(&a.company)), "{backend}");
    assert!(got.pools.iter().all(|p| held(&p.company)), "{backend}");
    assert!(got.bundles.iter().all(|b| held(&b.company)), "{backend}");
    assert!(got.allowances.iter().all(|a| held(&a.company)), "{backend}");
    assert_eq!(got.products, whole.products, "{backend}");
    assert_eq!(got.rates, whole.rates, "{backend}");
}

/// An intake judge that records a batch of events decided beforehand.
struct Recorded(Option<EventBatch>);

impl IntakeJudge for Recorded {
    fn events(&mut self, _: &IntakeSnapshot) -> anyhow::Result<EventBatch> {
        Ok(self.0.take().unwrap_or_default())
    }

    fn next_usage(&mut self) -> anyhow::Result<Option<Vec<String>>> {
        Ok(None)
    }

    fn usage(
        &mut self,
        _: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<UsageBatch> {
        Ok(UsageBatch::default())
    }
}

#[tokio::test]
async fn events_keep_their_verdicts_and_order() {
    let fx = Fixture::read(&fixture("contracted-removal")).unwrap();
    each_backend(async |db, store| {
        with_store!(store, s => {
            s.migrate().await.unwrap();
            s.save_world(&fx.world).await.unwrap();
            let recorded: Vec<RecordedEvent> = fx.events.iter().enumerate().map(|(i, e)| RecordedEvent {
                event: e.clone(),
                rejection: (i % 3 == 0).then(|| format!("reason {i}")),
            }).collect();
            let companies: Vec<_> = fx.world.companies.keys().cloned().collect();
            let request = IntakeRequest { world: None, files: &[], companies: &companies };
            let mut judge = Recorded(Some(EventBatch { events: recorded.clone(), ..Default::default() }));
            assert_eq!(s.take_in(request, &mut judge).await.unwrap(), IntakeOutcome::Recorded);
            let accepted = s.accepted_events(None).await.unwrap();
            let want: Vec<Event> = recorded.iter().filter(|r| r.rejection.is_none()).map(|r| r.event.clone()).collect();
            assert_eq!(accepted, want, "{}", db.backend);
            let rejections = s.rejections().await.unwrap();
            assert_eq!(rejections.len(), recorded.len() - want.len());
            assert_eq!(rejections[0].reason, "reason 0");
            assert_eq!(rejections[0].line, fx.events[0].line);
            let one = &fx.events[1].company;
            let only = s.accepted_events(Some(std::slice::from_ref(one))).await.unwrap();
            assert!(!only.is_empty() && only.iter().all(|e| &e.company == one));
        });
    })
    .await;
}

#[tokio::test]
async fn new_master_data_refuses_a_close_computed_on_the_old() {
    // A close commits only if the intake versions it read are still the companies'; a
    // scenario taken in raises the versions of its companies, as events and usage do.
    let fx = Fixture::read(&fixture("demo")).unwrap();
    each_backend(async |db, store| {
        with_store!(store, s => {
            s.migrate().await.unwrap();
            let ids: Vec<CompanyId> = fx.world.companies.keys().cloned().collect();
            let before = s.intake_versions(&ids).await.unwrap();
            let request = IntakeRequest { world: Some(&fx.world), files: &[], companies: &[] };
            assert_eq!(s.take_in(request, &mut Recorded(None)).await.unwrap(), IntakeOutcome::Recorded);
            let after = s.intake_versions(&ids).await.unwrap();
            for c in &ids {
                let version = |v: &std::collections::BTreeMap<CompanyId, i64>| v.get(c).copied().unwrap_or(0);
                assert!(version(&after) > version(&before), "{} {c}", db.backend);
            }
        });
    })
    .await;
}

fn sample_document() -> Document {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    Document {
        number: "corp-20260228".into(),
        company: "corp".into(),
        kind: DocumentKind::Invoice,
        boundary_index: 1,
        boundary: d("2026-02-28"),
        period_start: d("2026-02-28"),
        period_end: d("2026-03-31"),
        lines: vec![
            Line {
                kind: LineKind::LicenseFee,
                office: Some("ber".into()),
                product: "seat".into(),
                description: "Seat: 3 seats".into(),
                quantity: Some(3),
                unit_price: Some(Decimal::new(2500, 2)),
                amount: Decimal::new(7500, 2),
                source: String::new(),
                corrects: None,
            },
            Line {
                kind: LineKind::Proration,
                office: Some("ber".into()),
                product: "seat".into(),
                description: "Seat: 1 seat added".into(),
                quantity: Some(1),
                unit_price: Some(Decimal::new(2500, 2)),
                amount: Decimal::new(1161, 2),
                source: "events.jsonl:4".into(),
                corrects: None,
            },
        ],
        currency: Currency::from_code("EUR").unwrap(),
    }
}

#[tokio::test]
async fn a_step_is_committed_once_with_its_effects() {
    let fx = Fixture::read(&fixture("contracted-removal")).unwrap();
    each_backend(async |db, store| {
        with_store!(store, s => {
            s.migrate().await.unwrap();
            s.save_world(&fx.world).await.unwrap();
            let run = StepRun {
                step: Step::Invoice,
                company: "corp".into(),
                boundary_index: 1,
                boundary_at: t("2026-02-27T23:00:00Z"),
                boundary: NaiveDate::from_ymd_opt(2026, 2, 28).unwrap(),
                started_at: t("2026-02-27T23:00:00Z"),
                finished_at: t("2026-02-27T23:00:01Z"),
                lease: None,
                intake_version: 0,
            };
            let effects = StepEffects { items: 2, document: Some(sample_document()), ..Default::default() };
            let step = [(run, effects)];
            assert_eq!(s.commit_steps(&step).await.unwrap(), CommitOutcome::Committed, "{}", db.backend);
            assert_eq!(s.commit_steps(&step).await.unwrap(), CommitOutcome::AlreadyDone, "{}: second commit must write nothing", db.backend);
            assert_eq!(s.documents().await.unwrap(), vec![sample_document()]);
            let runs = s.job_runs().await.unwrap();
            assert_eq!(runs.len(), 1);
            assert_eq!((runs[0].job, runs[0].status, runs[0].items), (Job::Step(Step::Invoice), JobStatus::Ok, 2));
            let progress = s.progress(None).await.unwrap();
            assert_eq!(latest_closes(&progress).get("corp"), Some(&1));
            assert_eq!(progress[0].step, Step::Invoice);
        });
    })
    .await;
}

#[tokio::test]
async fn concurrent_commits_of_one_step_write_once() {
    let fx = Fixture::read(&fixture("contracted-removal")).unwrap();
    for db in TestDb::all().await {
        let store = Arc::new(db.store().await);
        with_store!(&*store, s => {
            s.migrate().await.unwrap();
            s.save_world(&fx.world).await.unwrap();
        });
        let mut tasks = Vec::new();
        for i in 0..4 {
            let url = db.url.clone();
            let backend = db.backend;
            tasks.push(tokio::spawn(async move {
                let store = match backend {
                    "sqlite" => billrun::store::AnyStore::Sqlite(
                        billrun::store::SqliteStore::connect(&url).await.unwrap(),
                    ),
                    _ => billrun::store::AnyStore::Postgres(
                        billrun::store::PgStore::connect(&url).await.unwrap(),
                    ),
                };
                let run = StepRun {
                    step: Step::Invoice,
                    company: "corp".into(),
                    boundary_index: 1,
                    boundary_at: t("2026-02-27T23:00:00Z"),
                    boundary: NaiveDate::from_ymd_opt(2026, 2, 28).unwrap(),
                    started_at: t("2026-02-27T23:00:00Z") + chrono::Duration::seconds(i),
                    finished_at: t("2026-02-27T23:00:01Z"),
                    lease: None,
                    intake_version: 0,
                };
                let effects = StepEffects {
                    document: Some(sample_document()),
                    ..Default::default()
                };
                with_store!(&store, s => s.commit_steps(&[(run, effects)]).await.unwrap() == CommitOutcome::Committed)
            }));
        }
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "{}: exactly one commit may win", db.backend);
        with_store!(&*store, s => {
            assert_eq!(s.documents().await.unwrap().len(), 1);
            assert_eq!(s.job_runs().await.unwrap().len(), 1);
        });
    }
}

async fn new_db(backend: &str) -> TestDb {
    match backend {
        "sqlite" => TestDb::sqlite().await,
        _ => TestDb::postgres(&crate::support::postgres_url().unwrap()).await,
    }
}

/// Records every demo event up front (even those after `until`, which must not leak into any
/// document at or before it), then closes up to `until` in one late run or tick by tick.
async fn close_demo(db: &TestDb, until: DateTime<Utc>, late: bool) -> Vec<Document> {
    let fx = Fixture::read(&fixture("demo")).unwrap();
    let wall = || t("2030-01-01T00:00:00Z");
    let store = db.store().await;
    with_store!(&store, s => {
        s.migrate().await.unwrap();
        s.save_world(&fx.world).await.unwrap();
        // Usage too: the close rates only what arrived before its boundary, whenever it was
        // taken in (the demo's late row is still rated late, by the Mar 31 close).
        let intake = Intake {
            world: &fx.world,
            save_world: false,
            events: &fx.events,
            usage_companies: fx.usage.iter().map(|l| l.company.clone()).collect(),
            usage: Box::new(fx.usage.iter().cloned().map(Ok)),
            files: &[],
            usage_chunk: USAGE_CHUNK,
        };
        take_in(s, intake).await.unwrap();
        if !late {
            let mut at = t("2026-01-01T00:00:00Z");
            while at < until {
                run_due(s, &fx.world.companies, at, &DueOptions::default(), &wall).await.unwrap();
                at += chrono::Duration::hours(13);
            }
        }
        let report = run_due(s, &fx.world.companies, until, &DueOptions::default(), &wall).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        s.documents().await.unwrap()
    })
}

/// Closing months in one late run writes the same documents as closing each boundary on
/// time, and the same lines as the replay: every step computes as of its boundary.
#[tokio::test]
async fn a_late_run_writes_what_on_time_runs_write() {
    let until = t("2026-06-20T00:00:00Z");
    let mut backends = vec!["sqlite"];
    if crate::support::postgres_url().is_some() {
        backends.push("postgres");
    }
    let mut results = Vec::new();
    for backend in backends {
        for late in [true, false] {
            let db = new_db(backend).await;
            results.push(close_demo(&db, until, late).await);
        }
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    let lines: Vec<Vec<String>> = results[0]
        .iter()
        .flat_map(|d| {
            let cur = d.currency.clone();
            d.lines.iter().enumerate().map(move |(i, l)| {
                vec![
                    d.number.clone(),
                    (i + 1).to_string(),
                    l.kind.as_str().to_string(),
                    cur.format_amount(l.amount),
                ]
            })
        })
        .collect();
    let expected: Vec<Vec<String>> =
        crate::support::csv_rows(&fixture("demo").join("expected/invoices.csv"))[1..]
            .iter()
            // Closes only: the adjustments in the file come from the demo's re-runs.
            .filter(|r| r[3].as_str() <= "2026-06-20" && r[7] != "adjustment")
            .map(|r| vec![r[0].clone(), r[6].clone(), r[7].clone(), r[12].clone()])
            .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want);
    assert!(want.len() >= 10);
}

/// Repeats of a usage id are judged the same however the intake is chunked: against the
/// rows of the chunk being judged, of the chunk being written beside it (looked up in
/// memory) and of chunks already written (looked up in the table).
#[tokio::test]
async fn duplicates_are_found_across_chunks_however_they_fall() {
    let fx = Fixture::read(&fixture("demo")).unwrap();
    let base: Vec<_> = fx.usage.iter().take(6).cloned().collect();
    let changed = |i: usize| {
        let mut l = base[i].clone();
        if let Ok(input) = &mut l.input {
            input.content.push_str(" (changed)");
        }
        l
    };
    let mut feed = vec![
        base[0].clone(),
        base[1].clone(),
        base[2].clone(),
        base[0].clone(),
        base[3].clone(),
        changed(1),
        base[4].clone(),
        base[2].clone(),
        changed(0),
        base[5].clone(),
        base[5].clone(),
    ];
    for (i, l) in feed.iter_mut().enumerate() {
        l.line = i as i64 + 2;
    }
    let mut backends = vec!["sqlite"];
    if crate::support::postgres_url().is_some() {
        backends.push("postgres");
    }
    let mut outcomes = Vec::new();
    for backend in backends {
        for chunk in [1, 2, 3, USAGE_CHUNK] {
            let db = new_db(backend).await;
            let store = db.store().await;
            let outcome = with_store!(&store, s => {
                s.migrate().await.unwrap();
                s.save_world(&fx.world).await.unwrap();
                let intake = Intake {
                    world: &fx.world,
                    save_world: false,
                    events: &[],
                    usage_companies: feed.iter().map(|l| l.company.clone()).collect(),
                    usage: Box::new(feed.clone().into_iter().map(Ok)),
                    files: &[],
                    usage_chunk: chunk,
                };
                let Taken::Recorded { usage, .. } = take_in(s, intake).await.unwrap() else {
                    panic!("{backend}: nothing else loads");
                };
                let far = t("2030-01-01T00:00:00Z");
                let bounds: Vec<_> = fx.world.companies.values().map(|c| (c.id.clone(), far)).collect();
                let mut stored: Vec<String> =
                    s.unrated_usage(&bounds).await.unwrap().into_iter().map(|u| u.id).collect();
                stored.sort();
                let mut refused: Vec<(i64, String)> =
                    s.rejections().await.unwrap().into_iter().map(|r| (r.line, r.reason)).collect();
                refused.sort();
                (usage, stored, refused)
            });
            outcomes.push((backend, chunk, outcome));
        }
    }
    let (_, _, first) = &outcomes[0];
    assert_eq!(first.0.accepted, 6);
    assert_eq!(first.0.duplicates, 3, "the repeats of lines 2, 4 and 11");
    assert_eq!(
        first.2,
        vec![
            (
                7,
                format!("duplicate id {} with different content", base[1].id)
            ),
            (
                10,
                format!("duplicate id {} with different content", base[0].id)
            ),
        ]
    );
    assert_eq!(first.1.len(), 6);
    for (backend, chunk, outcome) in &outcomes {
        assert_eq!(outcome, first, "{backend}, chunks of {chunk}");
    }
}

/// A usage row that can't be read at all fails the whole intake, however far into the feed
/// it comes and however the chunks fall: the chunks written before it, and the one being
/// written while it is read, are rolled back with the rest.
#[tokio::test]
async fn an_unreadable_row_deep_in_the_feed_leaves_nothing_written() {
    let fx = Fixture::read(&fixture("demo")).unwrap();
    let rows: Vec<_> = fx.usage.iter().take(6).cloned().collect();
    let mut backends = vec!["sqlite"];
    if crate::support::postgres_url().is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        for chunk in [1, 2, 3, USAGE_CHUNK] {
            let db = new_db(backend).await;
            let store = db.store().await;
            with_store!(&store, s => {
                s.migrate().await.unwrap();
                s.save_world(&fx.world).await.unwrap();
                let feed = rows.iter().cloned().enumerate().map(|(i, l)| {
                    if i == 4 {
                        Err(anyhow::anyhow!("usage.csv:6: invalid UTF-8"))
                    } else {
                        Ok(l)
                    }
                });
                let intake = Intake {
                    world: &fx.world,
                    save_world: false,
                    events: &[],
                    usage_companies: rows.iter().map(|l| l.company.clone()).collect(),
                    usage: Box::new(feed),
                    files: &[],
                    usage_chunk: chunk,
                };
                let failed = take_in(s, intake).await.map(|_| ()).unwrap_err();
                assert_eq!(
                    failed.to_string(),
                    "usage.csv:6: invalid UTF-8",
                    "{backend}, chunks of {chunk}"
                );
                let far = t("2030-01-01T00:00:00Z");
                let bounds: Vec<_> =
                    fx.world.companies.values().map(|c| (c.id.clone(), far)).collect();
                assert!(
                    s.unrated_usage(&bounds).await.unwrap().is_empty(),
                    "{backend}, chunks of {chunk}: rows were written"
                );
                assert!(s.rejections().await.unwrap().is_empty());
            });
        }
    }
}
