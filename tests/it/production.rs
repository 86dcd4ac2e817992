//! Running in production: several run-due processes at once, crashes and reruns, a parked
//! company, fencing of a stale lease holder, and the daemon's start and SIGTERM — on both
//! backends where a database is involved.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use billrun::domain::close::{Step, StepEffects};
use billrun::domain::words::CompanyId;
use billrun::store::{CommitOutcome, Lease, StepRun, Store};
use billrun::with_store;
use chrono::{DateTime, NaiveDate, Utc};

use crate::support::{TestDb, billrun, csv_rows, dump, fixture, load, run_due};

fn bin() -> String {
    assert_cmd::cargo::cargo_bin("billrun")
        .display()
        .to_string()
}

async fn all_backends() -> Vec<TestDb> {
    TestDb::all().await
}

/// Rows of a dumped file; `unordered` sorts them (with `seq` dropped) for files whose order
/// depends on which process did what first.
fn rows(dir: &Path, file: &str, unordered: bool) -> Vec<Vec<String>> {
    let mut rows = csv_rows(&dir.join(file));
    if unordered {
        if file == "ledger.csv" {
            for r in &mut rows {
                r.remove(0);
            }
        }
        rows.sort();
    }
    rows
}

fn assert_same_outcome(a: &Path, b: &Path, unordered: bool) {
    for file in [
        "invoices.csv",
        "usage_records.csv",
        "licenses.csv",
        "card_charges.csv",
        "rejections.csv",
    ] {
        assert_eq!(rows(a, file, false), rows(b, file, false), "{file}");
    }
    for file in ["ledger.csv", "job_runs.csv"] {
        assert_eq!(rows(a, file, unordered), rows(b, file, unordered), "{file}");
    }
}

fn generated(dir: &Path) -> std::path::PathBuf {
    let fx = dir.join("gen");
    billrun()
        .args([
            "gen",
            "--companies",
            "24",
            "--events",
            "3000",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&fx)
        .assert()
        .success();
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_run_due_processes_at_once_do_every_step_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = generated(tmp.path());
    for shared in all_backends().await {
        let single = shared.another().await;
        load(&shared.url, &fx);
        load(&single.url, &fx);
        let as_of = "2026-03-15T00:00:00Z";
        let children: Vec<_> = (0..3)
            .map(|_| {
                Command::new(bin())
                    .args(["--database", &shared.url, "run-due", "--as-of", as_of])
                    .env("BILLRUN_LOG", "warn")
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
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A company held by another process is left to it, so one more run finds nothing.
        run_due(&shared.url, as_of);
        run_due(&single.url, as_of);
        let (a, b) = (
            tmp.path().join(format!("a-{}", shared.backend)),
            tmp.path().join(format!("b-{}", shared.backend)),
        );
        dump(&shared.url, &a);
        dump(&single.url, &b);
        assert_same_outcome(&a, &b, true);
        let runs = rows(&a, "job_runs.csv", true);
        let mut keys: Vec<_> = runs[1..]
            .iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect();
        let total = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), total, "{}: a step ran twice", shared.backend);
        assert!(total >= 24 * 2 * 6 && total % 6 == 0, "{total} steps");
    }
}

/// Kills run-due at several places (inside a step's transaction, between steps, after a
/// commit) and reruns it at once: the result is exactly a clean run's. The crashed run's
/// leases are taken over immediately, because their holder is provably gone (its process on
/// this host ended; on PostgreSQL its sessions too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_anywhere_then_a_rerun_leaves_what_a_clean_run_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let as_of = "2026-04-02T00:00:00Z";
    for db in all_backends().await {
        let clean = db.another().await;
        load(&clean.url, &fixture("credits-wallets"));
        run_due(&clean.url, as_of);
        let want = tmp.path().join(format!("clean-{}", db.backend));
        dump(&clean.url, &want);
        for point in [
            "commit:invoice",
            "before-commit:expire",
            "after-commit:grant",
            "commit:rate",
        ] {
            let crashed = db.another().await;
            load(&crashed.url, &fixture("credits-wallets"));
            let out = billrun()
                .args(["--database", &crashed.url, "run-due", "--as-of", as_of])
                .env("BILLRUN_FAILPOINT", point)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                None,
                "{point}: the process must have died: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Right after the crash, with the default 30-second leases still unexpired.
            run_due(&crashed.url, as_of);
            let got = tmp
                .path()
                .join(format!("{}-{}", db.backend, point.replace(':', "-")));
            dump(&crashed.url, &got);
            assert_same_outcome(&want, &got, false);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_company_is_parked_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    for db in all_backends().await {
        load(&db.url, &fixture("credits-wallets"));
        let out = billrun()
            .args([
                "--database",
                &db.url,
                "run-due",
                "--as-of",
                "2026-03-02T00:00:00Z",
            ])
            .env("BILLRUN_FAILPOINT", "error:invoice:alpha")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(4),
            "a parked company is work left undone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = billrun()
            .args([
                "--database",
                &db.url,
                "status",
                "--as-of",
                "2026-03-02T00:00:00Z",
            ])
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(4));
        // Columns are aligned: compare with single spaces.
        let text = String::from_utf8_lossy(&status.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains("alpha 2026-01-01 invoice")
                && text.contains("fail point invoice:alpha reached"),
            "{text}"
        );
        assert!(text.contains("beta 2026-03-01 0"), "beta went on: {text}");
        // The next run retries the parked company and clears it.
        billrun()
            .args([
                "--database",
                &db.url,
                "run-due",
                "--as-of",
                "2026-03-02T00:00:00Z",
            ])
            .assert()
            .success();
        let status = billrun()
            .args([
                "--database",
                &db.url,
                "status",
                "--as-of",
                "2026-03-02T00:00:00Z",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&status.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains("parked: none") && text.contains("alpha 2026-03-01 0"),
            "{text}"
        );
        let out = tmp.path().join(db.backend);
        dump(&db.url, &out);
        assert_eq!(
            csv_rows(&out.join("invoices.csv"))
                .iter()
                .filter(|r| r[1] == "alpha")
                .count(),
            3 + 3 + 5
        );
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A process whose lease ran out and was taken over can no longer write, even if it wakes up
/// and tries: its commit is refused and leaves nothing.
#[tokio::test]
async fn a_stale_lease_holder_cannot_write() {
    for db in all_backends().await {
        let store = db.store().await;
        with_store!(&store, s => {
            s.migrate().await.unwrap();
            let acme = ["acme".into()];
            let fence_a = s.acquire_leases(&acme, "a", t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:01Z")).await.unwrap()["acme"];
            assert!(s.acquire_leases(&acme, "b", t("2026-01-01T00:00:00.5Z"), t("2026-01-01T00:01:00Z")).await.unwrap().is_empty(), "{}: a live lease is not taken", db.backend);
            let fence_b = s.acquire_leases(&acme, "b", t("2026-01-01T00:00:02Z"), t("2026-01-01T00:01:00Z")).await.unwrap()["acme"];
            assert!(fence_b > fence_a);
            let run = |owner: &str, fence: i64| StepRun {
                step: Step::Grant,
                company: "acme".into(),
                boundary_index: 0,
                boundary_at: t("2026-01-01T00:00:00Z"),
                boundary: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                started_at: t("2026-01-01T00:00:03Z"),
                finished_at: t("2026-01-01T00:00:03Z"),
                lease: Some(Lease { owner: owner.into(), fence, ttl_micros: 60_000_000 }),
                intake_version: 0,
            };
            let outcome = s.commit_steps(&[(run("a", fence_a), StepEffects::default())]).await.unwrap();
            assert_eq!(outcome, CommitOutcome::Fenced { companies: vec!["acme".into()] });
            assert!(s.job_runs().await.unwrap().is_empty(), "a refused commit writes nothing");
            assert_eq!(s.commit_steps(&[(run("b", fence_b), StepEffects::default())]).await.unwrap(), CommitOutcome::Committed);
            assert_eq!(s.job_runs().await.unwrap().len(), 1);
        });
    }
}

/// A lease says since when its holder has held the company: renewals and re-takes by the same
/// holder keep that instant; a new holder, by expiry or by take-over, starts it again.
#[tokio::test]
async fn a_lease_records_since_when_it_is_held() {
    for db in all_backends().await {
        let store = db.store().await;
        with_store!(&store, s => {
            s.migrate().await.unwrap();
            let acme: [CompanyId; 1] = ["acme".into()];
            let since = |s_: Vec<billrun::store::LeaseRecord>| (s_[0].owner.clone(), s_[0].since);
            s.acquire_leases(&acme, "a", t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:30Z")).await.unwrap();
            s.renew_leases(&acme, "a", t("2026-01-01T00:00:50Z")).await.unwrap();
            s.acquire_leases(&acme, "a", t("2026-01-01T00:00:40Z"), t("2026-01-01T00:01:10Z")).await.unwrap();
            assert_eq!(since(s.lease_holders(&acme).await.unwrap()), ("a".into(), t("2026-01-01T00:00:00Z")), "{}", db.backend);
            s.acquire_leases(&acme, "b", t("2026-01-01T00:02:00Z"), t("2026-01-01T00:02:30Z")).await.unwrap();
            assert_eq!(since(s.lease_holders(&acme).await.unwrap()), ("b".into(), t("2026-01-01T00:02:00Z")), "{}", db.backend);
            s.take_over(&acme[0], "b", "c", t("2026-01-01T00:02:10Z"), t("2026-01-01T00:02:40Z")).await.unwrap().unwrap();
            assert_eq!(since(s.lease_holders(&acme).await.unwrap()), ("c".into(), t("2026-01-01T00:02:10Z")), "{}", db.backend);
            s.release_leases(&acme, "c").await.unwrap();
            s.acquire_leases(&acme, "c", t("2026-01-01T00:03:00Z"), t("2026-01-01T00:03:30Z")).await.unwrap();
            assert_eq!(since(s.lease_holders(&acme).await.unwrap()), ("c".into(), t("2026-01-01T00:03:00Z")), "{}: a lease given back and taken again starts again", db.backend);
        });
    }
}

#[test]
fn the_daemon_runs_due_work_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    load(&url, &fixture("dst-gap"));
    let config = tmp.path().join("schedule.toml");
    std::fs::write(
        &config,
        "cron = \"* * * * * *\"\ngrace_seconds = 10\nlease_seconds = 30\n",
    )
    .unwrap();
    let metrics = tmp.path().join("billrun.prom");
    let mut child = Command::new(bin())
        .args(["--database", &url, "schedule", "--config"])
        .arg(&config)
        .arg("--metrics-file")
        .arg(&metrics)
        .env("BILLRUN_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tmp.path().join("dump");
    let started = Instant::now();
    loop {
        dump(&url, &out);
        if csv_rows(&out.join("job_runs.csv")).len() > 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon closed nothing"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("SIGTERM received") && stderr.contains("scheduler stopped"),
        "{stderr}"
    );
    // Every run the daemon finished left its metrics.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("billrun_last_run_success 1\n")
            && text.contains("billrun_run_duration_seconds "),
        "{text}"
    );
}

#[test]
fn the_daemon_refuses_an_invalid_cron_expression_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("schedule.toml");
    std::fs::write(&config, "cron = \"0 0 25 * * *\"\n").unwrap();
    let out = billrun()
        .args(["schedule", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cron: invalid cron expression \"0 0 25 * * *\": "),
        "{stderr}"
    );
}

/// A commit of several companies' steps is all or nothing: one step already claimed by
/// another run, or one company's lease taken over, and nothing of the batch is written (the
/// caller then commits company by company, leaving out only that one).
#[tokio::test]
async fn a_batch_of_companies_commits_all_or_nothing() {
    let at = t("2026-01-01T00:00:00Z");
    let run = |company: &str, lease: Option<Lease>| StepRun {
        step: Step::Grant,
        company: company.into(),
        boundary_index: 0,
        boundary_at: at,
        boundary: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        started_at: at,
        finished_at: at,
        lease,
        intake_version: 0,
    };
    for db in all_backends().await {
        let store = db.store().await;
        with_store!(&store, s => {
            s.migrate().await.unwrap();
            // Claims: beta's step is already done, so the batch writes nothing.
            assert_eq!(s.commit_steps(&[(run("beta", None), StepEffects::default())]).await.unwrap(), CommitOutcome::Committed);
            let batch = vec![(run("alpha", None), StepEffects::default()), (run("beta", None), StepEffects::default())];
            assert_eq!(s.commit_steps(&batch).await.unwrap(), CommitOutcome::AlreadyDone, "{}", db.backend);
            assert_eq!(s.job_runs().await.unwrap().len(), 1, "{}: alpha's step was not written", db.backend);
            assert_eq!(s.commit_steps(&batch[..1]).await.unwrap(), CommitOutcome::Committed);
            // Fencing: gamma's lease was taken over, so a batch with delta writes nothing.
            let ids = ["gamma".into(), "delta".into()];
            let fences = s
                .acquire_leases(&ids, "a", at, at + chrono::Duration::seconds(1))
                .await.unwrap();
            assert_eq!(fences.len(), 2);
            let later = at + chrono::Duration::seconds(5);
            assert_eq!(s.acquire_leases(&ids[..1], "b", later, later + chrono::Duration::seconds(60)).await.unwrap().len(), 1);
            let lease = |c: &str| Some(Lease { owner: "a".into(), fence: fences[c], ttl_micros: 60_000_000 });
            let batch = vec![
                (run("gamma", lease("gamma")), StepEffects::default()),
                (run("delta", lease("delta")), StepEffects::default()),
            ];
            assert_eq!(s.commit_steps(&batch).await.unwrap(), CommitOutcome::Fenced { companies: vec!["gamma".into()] });
            assert_eq!(s.job_runs().await.unwrap().len(), 2, "{}: nothing of the fenced batch", db.backend);
            assert_eq!(s.commit_steps(&batch[1..]).await.unwrap(), CommitOutcome::Committed, "delta alone still holds its lease");
        });
    }
}
