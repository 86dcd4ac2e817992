//! Finance re-runs on both backends: issued documents the database itself keeps immutable,
//! an adjustment claimed once however many re-runs race for it, and `rerun` and `invoice`
//! through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use billrun::domain::invoice::{DocumentKind, LineKind};
use billrun::domain::job::{Job, JobStatus};
use billrun::domain::rerun::AdjustmentNote;
use billrun::fixture::Fixture;
use billrun::store::{Adjustment, AnyStore, RerunCommit, RerunRun, Store};
use billrun::with_store;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::support::{TestDb, billrun, csv_rows, dump, fixture, load, run_due};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `fixtures/reruns` replayed in process into `store`.
async fn replayed(store: &AnyStore) {
    let fx = Fixture::read(&fixture("reruns")).unwrap();
    with_store!(store, s => { billrun::replay::replay(s, &fx, None).await.unwrap(); });
}

/// Runs `sql` on the test database directly, as a person with a SQL console would.
async fn raw(db: &TestDb, sql: &str) -> Result<u64, sqlx::Error> {
    let q = sqlx::AssertSqlSafe(sql.to_string());
    if db.backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let done = sqlx::query(q)
            .execute(&pool)
            .await
            .map(|r| r.rows_affected());
        pool.close().await;
        done
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let done = sqlx::query(q)
            .execute(&pool)
            .await
            .map(|r| r.rows_affected());
        pool.close().await;
        done
    }
}

#[tokio::test]
async fn an_issued_document_can_not_be_changed_even_by_hand() {
    for db in TestDb::all().await {
        let store = db.store().await;
        replayed(&store).await;
        let before = with_store!(&store, s => s.documents().await.unwrap());
        assert!(
            before.len() >= 10,
            "{}: the replay issued documents",
            db.backend
        );
        for sql in [
            "UPDATE invoice_lines SET amount = 0 WHERE number = 'north-20260401'",
            "DELETE FROM invoice_lines WHERE number = 'north-20260401-A1'",
            "UPDATE invoices SET total = 0 WHERE number = 'crema-20260415'",
            "DELETE FROM invoices WHERE company_id = 'north'",
            "UPDATE invoice_adjustments SET reason = 'nothing happened'",
            "DELETE FROM invoice_adjustments",
        ] {
            let err = raw(&db, sql)
                .await
                .expect_err(&format!("{}: {sql} was allowed", db.backend));
            assert!(
                err.to_string().contains("issued documents are immutable"),
                "{}: {sql}: {err}",
                db.backend
            );
        }
        if db.backend == "postgres" {
            let err = raw(&db, "TRUNCATE invoice_lines").await.unwrap_err();
            assert!(err.to_string().contains("immutable"), "{err}");
        }
        let after = with_store!(&store, s => s.documents().await.unwrap());
        assert_eq!(after, before, "{}: nothing changed", db.backend);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_re_runs_issue_one_adjustment() {
    for db in TestDb::all().await {
        let store = db.store().await;
        replayed(&store).await;
        let issued = with_store!(&store, s => s.issued_at(&"north".into(), 1).await.unwrap());
        assert_eq!(issued.adjustments.len(), 2);
        let mut document = issued.adjustments[0].document.clone();
        document.number = "north-20260401-A3".into();
        let run = RerunRun {
            company: "north".into(),
            boundary_index: 1,
            boundary_at: t("2026-04-01T04:00:00Z"),
            boundary: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            started_at: t("2026-05-02T00:00:00Z"),
            finished_at: t("2026-05-02T00:00:01Z"),
            adjustment: Some(Adjustment {
                document,
                note: AdjustmentNote {
                    adjusts: "north-20260401".into(),
                    reason: "race".into(),
                    by: "test".into(),
                    at: t("2026-05-02T00:00:00Z"),
                },
            }),
            card_charge: None,
        };
        let (a, b) =
            with_store!(&store, s => tokio::join!(s.record_rerun(&run), s.record_rerun(&run)));
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o == RerunCommit::Raced);
        assert_eq!(
            outcomes,
            [RerunCommit::Recorded, RerunCommit::Raced],
            "{}",
            db.backend
        );
        let issued = with_store!(&store, s => s.issued_at(&"north".into(), 1).await.unwrap());
        let numbers: Vec<_> = issued
            .adjustments
            .iter()
            .map(|a| a.document.number.as_str())
            .collect();
        assert_eq!(
            numbers,
            [
                "north-20260401-A1",
                "north-20260401-A2",
                "north-20260401-A3"
            ]
        );
        let runs = with_store!(&store, s => s.job_runs().await.unwrap());
        let last = runs.last().unwrap();
        assert_eq!(
            (last.job, last.status, last.items),
            (Job::Rerun, JobStatus::Adjusted, 1)
        );
        assert_eq!(
            runs.iter().filter(|r| r.job == Job::Rerun).count(),
            8,
            "{}: the fixture's seven and this one",
            db.backend
        );
        // What `invoice` reads: the adjustment with its note, the invoice with all three.
        let a2 = with_store!(&store, s => s.issued_document(&"north".into(), "north-20260401-A2").await.unwrap().unwrap());
        assert_eq!(a2.document.kind, DocumentKind::Adjustment);
        assert_eq!(
            a2.note.as_ref().map(|n| (n.by.as_str(), n.reason.as_str())),
            Some(("events.jsonl:10", "talk corrected to 29.00 from March"))
        );
        assert_eq!(a2.document.lines[1].corrects, Some(LineKind::Proration));
        let invoice = with_store!(&store, s => s.issued_document(&"north".into(), "north-20260401").await.unwrap().unwrap());
        assert_eq!(invoice.adjustments.len(), 3);
        assert_eq!(invoice.document.total(), Decimal::new(54658, 2));
        store.close().await;
    }
}

/// A database holding `fixtures/reruns` without its `rerun` events, closed through May
/// (north: Mar 1, Apr 1, May 1; crema: Mar 15, Apr 15, May 15). The two price corrections of
/// north and crema's one were all recorded after the boundaries they correct.
fn closed_world(url: &str, dir: &Path) -> PathBuf {
    let fx = dir.join("fx");
    std::fs::create_dir_all(&fx).unwrap();
    let src = fixture("reruns");
    for f in ["scenario.toml", "usage.csv"] {
        std::fs::copy(src.join(f), fx.join(f)).unwrap();
    }
    let events: String = std::fs::read_to_string(src.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains(r#""type": "rerun""#))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(fx.join("events.jsonl"), events).unwrap();
    load(url, &fx);
    run_due(url, "2026-05-20T00:00:00Z");
    fx
}

/// Runs `billrun --database url ARGS` as finance user `fiona`; returns (exit, stdout, stderr).
fn finance(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = billrun()
        .env("USER", "fiona")
        .args(["--database", url])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The (number, line kind, amount) of every adjustment line, and the re-run rows of
/// `job_runs.csv` (company, boundary, status, items).
fn adjustments_and_reruns(url: &str, dir: &Path) -> (Vec<[String; 3]>, Vec<[String; 4]>) {
    let out = dir.join(format!("dump-{}", rand_suffix()));
    dump(url, &out);
    let lines = csv_rows(&out.join("invoices.csv"))
        .into_iter()
        .filter(|r| r[2] == "adjustment")
        .map(|r| [r[0].clone(), r[7].clone(), r[12].clone()])
        .collect();
    let reruns = csv_rows(&out.join("job_runs.csv"))
        .into_iter()
        .filter(|r| r[0] == "rerun")
        .map(|r| [r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()])
        .collect();
    (lines, reruns)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn strs<const N: usize>(a: [&str; N]) -> [String; N] {
    a.map(String::from)
}

#[tokio::test]
async fn finance_checks_and_corrects_a_closed_cycle_from_the_command_line() {
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        let url = db.url.as_str();
        closed_world(url, tmp.path());
        let at = ["--as-of", "2026-05-21T00:00:00Z"];
        let rerun = |boundary: &str, extra: &[&str]| {
            let mut args = vec!["rerun", "--company", "north", "--boundary", boundary];
            args.extend(["--reason", "talk corrected to 29.00"]);
            args.extend(at);
            args.extend(extra);
            finance(url, &args)
        };

        // A dry run prints each differing line and the totals, and writes nothing.
        let (code, out, err) = rerun("2026-04-01", &["--dry-run"]);
        assert_eq!(code, 0, "{}: {err}", db.backend);
        assert!(out.contains("dry run: nothing written"), "{out}");
        for want in [
            "360.00", "348.00", "-12.00", "42.58", "41.16", "-1.42", "546.58", "533.16", "-13.42",
        ] {
            assert!(
                out.contains(want),
                "{}: {want} missing from\n{out}",
                db.backend
            );
        }
        assert_eq!(adjustments_and_reruns(url, tmp.path()), (vec![], vec![]));

        // A real re-run issues the adjustment; again, it finds nothing more to adjust.
        let (code, out, _) = rerun("2026-04-01", &[]);
        assert_eq!(code, 0);
        assert!(out.contains("issued north-20260401-A1"), "{out}");
        let (code, out, _) = rerun("2026-04-01", &[]);
        assert_eq!(code, 0);
        assert!(out.contains("nothing to adjust"), "{out}");
        // May 1 was issued with both corrections: unaffected.
        let (code, out, _) = rerun("2026-05-01", &[]);
        assert_eq!(code, 0);
        assert!(out.contains("nothing to adjust"), "{out}");
        // A card company's adjustment is refunded to its card at the re-run's instant.
        let (code, out, _) = finance(
            url,
            &[
                "rerun",
                "--company",
                "crema",
                "--boundary",
                "2026-04-15",
                "--reason",
                "27.00",
                "--by",
                "gus",
                at[0],
                at[1],
            ],
        );
        assert_eq!(code, 0);
        assert!(out.contains("20.51 EUR refunded to the card"), "{out}");

        let (lines, reruns) = adjustments_and_reruns(url, tmp.path());
        assert_eq!(
            lines,
            [
                strs(["north-20260401-A1", "adjustment", "-12.00"]),
                strs(["north-20260401-A1", "adjustment", "-1.42"]),
                strs(["crema-20260415-A1", "adjustment", "-18.00"]),
                strs(["crema-20260415-A1", "adjustment", "-2.51"]),
            ],
            "{}",
            db.backend
        );
        assert_eq!(
            reruns,
            [
                strs(["north", "2026-04-01", "adjusted", "2"]),
                strs(["north", "2026-04-01", "identical", "0"]),
                strs(["north", "2026-05-01", "identical", "0"]),
                strs(["crema", "2026-04-15", "adjusted", "2"]),
            ]
        );
        let out = tmp.path().join("final");
        dump(url, &out);
        let refund = csv_rows(&out.join("card_charges.csv"))
            .into_iter()
            .find(|r| r[2] == "adjustment")
            .unwrap();
        assert_eq!(
            refund,
            strs([
                "2026-05-21T00:00:00Z",
                "crema",
                "adjustment",
                "-20.51",
                "EUR",
                "crema-20260415-A1"
            ])
        );
    }
}

#[tokio::test]
async fn refusals_are_bad_input_and_write_nothing() {
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        let url = db.url.as_str();
        closed_world(url, tmp.path());
        let cases: [(&[&str], &str); 7] = [
            (
                &[
                    "--company",
                    "north",
                    "--boundary",
                    "2026-06-01",
                    "--reason",
                    "x",
                ],
                "boundary 2026-06-01 of north is not closed yet (closed through 2026-05-01)",
            ),
            (
                &[
                    "--company",
                    "north",
                    "--boundary",
                    "2026-04-15",
                    "--reason",
                    "x",
                ],
                "2026-04-15 is not a boundary of north",
            ),
            (
                &[
                    "--company",
                    "south",
                    "--boundary",
                    "2026-04-01",
                    "--reason",
                    "x",
                ],
                "unknown company \"south\"",
            ),
            (
                &[
                    "--company",
                    "north",
                    "--boundary",
                    "2026-02-30",
                    "--reason",
                    "x",
                ],
                "--boundary: \"2026-02-30\" is not a date",
            ),
            (
                &[
                    "--company",
                    "north",
                    "--boundary",
                    "2026-04-01",
                    "--reason",
                    "  ",
                ],
                "the reason is empty",
            ),
            (
                &[
                    "--all",
                    "--from",
                    "2026-04-01",
                    "--to",
                    "2026-03-01",
                    "--reason",
                    "x",
                ],
                "--to 2026-03-01 is before --from 2026-04-01",
            ),
            (&["--company", "north", "--reason", "x"], "--boundary"),
        ];
        for (args, want) in cases {
            let mut all = vec!["rerun"];
            all.extend(args);
            let (code, _, err) = finance(url, &all);
            assert_eq!(code, 2, "{}: {args:?}: {err}", db.backend);
            assert!(err.contains(want), "{args:?}: {err}");
        }
        assert_eq!(adjustments_and_reruns(url, tmp.path()), (vec![], vec![]));
    }
}

#[tokio::test]
async fn who_re_runs_must_be_known_and_a_document_number_real() {
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        let url = db.url.as_str();
        closed_world(url, tmp.path());
        let (code, _, err) = billrun()
            .env_remove("USER")
            .env_remove("LOGNAME")
            .args([
                "--database",
                url,
                "rerun",
                "--company",
                "north",
                "--boundary",
                "2026-04-01",
                "--reason",
                "x",
            ])
            .output()
            .map(|o| {
                (
                    o.status.code().unwrap_or(-1),
                    (),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap();
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--by"), "{err}");
        for (number, want) in [
            ("north-20260231", "is not a document number"),
            ("south-20260401", "unknown company"),
            ("north-20260601", "no document north-20260601 was issued"),
        ] {
            let (code, _, err) = finance(url, &["invoice", number]);
            assert_eq!(code, 2, "{number}: {err}");
            assert!(err.contains(want), "{number}: {err}");
        }
        assert_eq!(adjustments_and_reruns(url, tmp.path()), (vec![], vec![]));
    }
}

#[tokio::test]
async fn invoice_shows_one_document_with_its_adjustments() {
    let db = TestDb::sqlite().await;
    let tmp = tempfile::tempdir().unwrap();
    let url = db.url.as_str();
    closed_world(url, tmp.path());
    let (code, _, err) = finance(
        url,
        &[
            "rerun",
            "--company",
            "north",
            "--boundary",
            "2026-04-01",
            "--reason",
            "talk is 29.00",
            "--as-of",
            "2026-05-21T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, text, _) = finance(url, &["invoice", "north-20260401"]);
    assert_eq!(code, 0);
    for want in [
        "invoice north-20260401",
        "North Freight Inc",
        "period 2026-04-01 up to 2026-05-01",
        "Talk: 2 seats added 2026-03-10, prorated 22/31 days",
        "Credit purchase on 2026-03-12",
        "546.58",
        "north-20260401-A1  -13.42  2026-05-21T00:00:00Z  by fiona  talk is 29.00",
        "total with adjustments  533.16",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    assert!(
        !text.contains("events.jsonl"),
        "no file positions for people:\n{text}"
    );
    let (_, text, _) = finance(url, &["invoice", "north-20260301"]);
    assert!(
        text.contains("Room phone: 2 seats") && text.contains("Talk: 10 seats"),
        "{text}"
    );
    let (code, json, _) = finance(url, &["invoice", "north-20260401-A1", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "adjustment");
    assert_eq!(v["total"], "-13.42");
    assert_eq!(v["adjustment_of"]["adjusts"], "north-20260401");
    assert_eq!(v["adjustment_of"]["issued_by"], "fiona");
    assert_eq!(v["adjustment_of"]["reason"], "talk is 29.00");
    assert_eq!(v["lines"][1]["corrects"], "proration");
    assert_eq!(v["lines"][1]["quantity"], serde_json::Value::Null);
    let (_, json, _) = finance(url, &["invoice", "north-20260401", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["adjustments"][0]["number"], "north-20260401-A1");
    assert_eq!(v["total_with_adjustments"], "533.16");
    assert_eq!(v["lines"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rerun_all_issue_each_adjustment_once() {
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        let url = db.url.as_str();
        closed_world(url, tmp.path());
        let bin = assert_cmd::cargo::cargo_bin("billrun");
        let children: Vec<_> = ["ann", "bea", "cy", "dot"]
            .into_iter()
            .map(|who| {
                Command::new(&bin)
                    .args([
                        "--database",
                        url,
                        "rerun",
                        "--all",
                        "--from",
                        "2026-03-01",
                        "--to",
                        "2026-05-31",
                    ])
                    .args(["--reason", "corrections of April", "--by", who])
                    .args(["--as-of", "2026-05-21T00:00:00Z"])
                    .env("BILLRUN_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}{}",
                db.backend,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("re-runs: 6 ("));
        }
        let (lines, reruns) = adjustments_and_reruns(url, tmp.path());
        let mut numbers: Vec<&str> = lines.iter().map(|l| l[0].as_str()).collect();
        numbers.dedup();
        // Mar and Apr of both companies were billed before their corrections; May was not.
        assert_eq!(
            numbers,
            [
                "north-20260301-A1",
                "crema-20260315-A1",
                "north-20260401-A1",
                "crema-20260415-A1"
            ],
            "{}: each adjustment once",
            db.backend
        );
        let adjusted = reruns.iter().filter(|r| r[2] == "adjusted").count();
        assert_eq!(
            (reruns.len(), adjusted),
            (4 * 6, 4),
            "{}: {reruns:?}",
            db.backend
        );
    }
}

#[tokio::test]
async fn a_rerun_event_in_a_production_feed_is_made_when_loaded() {
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        let url = db.url.as_str();
        closed_world(url, tmp.path());
        let feed = tmp.path().join("feed");
        std::fs::create_dir_all(&feed).unwrap();
        std::fs::write(
            feed.join("events.jsonl"),
            concat!(
                r#"{"id": "fin-1", "at": "2026-05-22T09:00:00Z", "type": "rerun", "company": "crema", "boundary": "2026-03-15", "reason": "price check", "dry_run": true}"#,
                "\n",
                r#"{"id": "fin-2", "at": "2026-05-22T10:00:00Z", "type": "rerun", "company": "crema", "boundary": "2026-03-15", "reason": "talk is 27.00"}"#,
                "\n",
                r#"{"id": "fin-3", "at": "2026-05-22T11:00:00Z", "type": "rerun", "company": "crema", "boundary": "2026-06-15", "reason": "too early"}"#,
                "\n",
            ),
        )
        .unwrap();
        let out = billrun()
            .args(["--database", url, "load"])
            .arg(&feed)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}: one rejected", db.backend);
        let (lines, reruns) = adjustments_and_reruns(url, tmp.path());
        assert_eq!(lines, [strs(["crema-20260315-A1", "adjustment", "-15.00"])]);
        assert_eq!(reruns, [strs(["crema", "2026-03-15", "adjusted", "1"])]);
        let (_, text, _) = finance(url, &["invoice", "crema-20260315-A1"]);
        assert!(
            text.contains("by fin-2") && text.contains("talk is 27.00"),
            "{text}"
        );
    }
}
