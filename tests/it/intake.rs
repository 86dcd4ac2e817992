//! Taking input in safely, on both backends: a load is one transaction (killed at any moment
//! it leaves nothing or everything), a retried or concurrent load never bills twice, feeds
//! never collide, an intake racing a close of the same company is either in that close or
//! refused as late, and figures beyond the store park a company instead of failing the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use billrun::store::Store;
use billrun::with_store;

use crate::support::{TestDb, billrun, csv_rows, dump, fixture, load, run_due};

fn bin() -> String {
    assert_cmd::cargo::cargo_bin("billrun")
        .display()
        .to_string()
}

/// Loads `dir` into `url`, returning the exit code and stderr (logs at info).
fn load_logged(url: &str, dir: &Path) -> (Option<i32>, String) {
    let out = billrun()
        .env("BILLRUN_LOG", "info")
        .args(["--database", url, "load"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file of a dump, row by row.
fn dumped(url: &str, at: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    dump(url, at);
    let mut files: Vec<_> = std::fs::read_dir(at)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                csv_rows(&p),
            )
        })
        .collect()
}

fn generated(dir: &Path, companies: &str, events: &str) -> PathBuf {
    let fx = dir.join(format!("gen-{companies}-{events}"));
    billrun()
        .args([
            "gen",
            "--companies",
            companies,
            "--events",
            events,
            "--seed",
            "3",
            "--out",
        ])
        .arg(&fx)
        .assert()
        .success();
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_retried_with_the_same_files_is_a_no_op_that_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    for db in TestDb::all().await {
        let (code, _) = load_logged(&db.url, &fixture("demo"));
        assert_eq!(code, Some(3), "the demo has rejected events");
        let once = dumped(&db.url, &tmp.path().join(format!("once-{}", db.backend)));
        let (code, stderr) = load_logged(&db.url, &fixture("demo"));
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("this exact content was loaded before: skipped")
                && stderr.contains("nothing new to load"),
            "{stderr}"
        );
        let twice = dumped(&db.url, &tmp.path().join(format!("twice-{}", db.backend)));
        assert_eq!(
            once, twice,
            "{}: a second load changed something",
            db.backend
        );
    }
}

/// A load killed inside its transaction, or at any moment by SIGKILL, leaves either nothing
/// or everything; loading again then leaves exactly what one clean load leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_killed_at_any_moment_leaves_nothing_or_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = generated(tmp.path(), "12", "4000");
    for db in TestDb::all().await {
        let clean = db.another().await;
        load(&clean.url, &fx);
        let want = dumped(
            &clean.url,
            &tmp.path().join(format!("clean-{}", db.backend)),
        );
        let empty = {
            let fresh = db.another().await;
            billrun()
                .args(["--database", &fresh.url, "migrate"])
                .assert()
                .success();
            dumped(
                &fresh.url,
                &tmp.path().join(format!("empty-{}", db.backend)),
            )
        };
        // Inside the transaction, just before it commits.
        let crashed = db.another().await;
        let out = billrun()
            .env("BILLRUN_FAILPOINT", "commit:load")
            .args(["--database", &crashed.url, "load"])
            .arg(&fx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), None, "the load must have died");
        let got = dumped(&crashed.url, &tmp.path().join(format!("fp-{}", db.backend)));
        assert_eq!(got, empty, "{}: a killed load left something", db.backend);
        load(&crashed.url, &fx);
        assert_eq!(
            dumped(
                &crashed.url,
                &tmp.path().join(format!("fp2-{}", db.backend))
            ),
            want
        );
        // SIGKILL at several moments of a real load.
        for delay_ms in [20, 120, 400, 900] {
            let killed = db.another().await;
            let mut child = Command::new(bin())
                .args(["--database", &killed.url, "load"])
                .arg(&fx)
                .env("BILLRUN_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = child.kill();
            let _ = child.wait();
            let label = format!("kill{delay_ms}-{}", db.backend);
            // Killed before it created the schema, the database is empty all the same.
            billrun()
                .args(["--database", &killed.url, "migrate"])
                .assert()
                .success();
            let got = dumped(&killed.url, &tmp.path().join(&label));
            assert!(
                got == empty || got == want,
                "{label}: a killed load left half its input"
            );
            load(&killed.url, &fx);
            let again = dumped(&killed.url, &tmp.path().join(format!("{label}-again")));
            assert_eq!(again, want, "{label}: reloading after the kill");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_loads_of_one_folder_leave_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = generated(tmp.path(), "6", "1500");
    for db in TestDb::all().await {
        let single = db.another().await;
        load(&single.url, &fx);
        let want = dumped(&single.url, &tmp.path().join(format!("one-{}", db.backend)));
        let children: Vec<_> = (0..3)
            .map(|_| {
                Command::new(bin())
                    .args(["--database", &db.url, "load"])
                    .arg(&fx)
                    .env("BILLRUN_LOG", "warn")
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                matches!(out.status.code(), Some(0 | 3)),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = dumped(&db.url, &tmp.path().join(format!("three-{}", db.backend)));
        assert_eq!(
            got, want,
            "{}: concurrent loads doubled something",
            db.backend
        );
    }
}

const SCENARIO: &str = r#"
[[company]]
id = "race"
name = "Race Co"
time_zone = "UTC"
anchor = "2026-01-01"
billing = "invoiced"
credit_sharing = "company"
primary_office = "hq"

[[company]]
id = "calm"
name = "Calm Co"
time_zone = "UTC"
anchor = "2026-01-01"
billing = "card"
card_verified = true
credit_sharing = "company"
primary_office = "calm-hq"

[[office]]
id = "hq"
company = "race"
name = "HQ"

[[office]]
id = "calm-hq"
company = "calm"
name = "Calm HQ"

[[product]]
code = "seat"
name = "Seat"
term = "monthly"
unit_price = "10.00"

[[license]]
company = "race"
office = "hq"
product = "seat"
quantity = 2

[[license]]
company = "calm"
office = "calm-hq"
product = "seat"
quantity = 1

[[rate]]
service = "calling"
type = "local"
price = "0.0100"
"#;

fn write_dir(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.to_path_buf()
}

fn usage_header() -> String {
    billrun::fixture::usage::HEADER.join(",")
}

#[test]
fn feeds_never_collide_and_deduplicate_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let url = crate::support::sqlite_url(tmp.path());
    load(
        &url,
        &write_dir(&tmp.path().join("scenario"), &[("scenario.toml", SCENARIO)]),
    );
    let event = |id: &str, at: &str, amount: &str| {
        format!(
            r#"{{"id": "{id}", "at": "{at}", "type": "credit_purchase", "company": "calm", "scope": "company", "amount": "{amount}"}}"#
        )
    };
    let a = write_dir(
        &tmp.path().join("a"),
        &[(
            "events.jsonl",
            &[
                event("p-1", "2026-01-10T00:00:00Z", "10.00"),
                event("p-2", "2026-01-10T01:00:00Z", "20.00"),
            ]
            .join("\n"),
        )],
    );
    // The second feed repeats p-1 as it was (a no-op), changes p-2 (refused), and buys p-3
    // on a line the first feed used: a reference by line would collide.
    let b = write_dir(
        &tmp.path().join("b"),
        &[(
            "events.jsonl",
            &[
                event("p-1", "2026-01-10T00:00:00Z", "10.00"),
                event("p-3", "2026-01-11T00:00:00Z", "30.00"),
                event("p-2", "2026-01-12T00:00:00Z", "99.00"),
            ]
            .join("\n"),
        )],
    );
    assert_eq!(load_logged(&url, &a).0, Some(0));
    let (code, stderr) = load_logged(&url, &b);
    assert_eq!(code, Some(3), "{stderr}");
    run_due(&url, "2026-02-01T00:00:00Z");
    let out = tmp.path().join("dump");
    dump(&url, &out);
    let charged: Vec<(String, String)> = csv_rows(&out.join("card_charges.csv"))
        .into_iter()
        .filter(|r| r[2] == "credit_purchase")
        .map(|r| (r[3].clone(), r[5].clone()))
        .collect();
    let want = [("10.00", "p-1"), ("20.00", "p-2"), ("30.00", "p-3")];
    assert_eq!(
        charged,
        want.map(|(a, r)| (a.to_string(), r.to_string())),
        "each purchase charged once, referenced by its id"
    );
    let rejected = csv_rows(&out.join("rejections.csv"));
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[1][3], "duplicate id p-2 with different content");
}

/// Runs a feed's load and a close of the same company at once, many times: every accepted
/// purchase dated before the boundary is on that boundary's invoice, every refused one says
/// its period is closed, and every usage row is rated exactly once, by that close or late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_close_is_in_it_or_refused_as_late() {
    let tmp = tempfile::tempdir().unwrap();
    let purchases = 40;
    let rows = 1500;
    let mut events = Vec::new();
    for i in 0..purchases {
        events.push(format!(
            r#"{{"id": "p-{i}", "at": "2026-01-31T23:{:02}:00Z", "type": "credit_purchase", "company": "race", "scope": "company", "amount": "1.00"}}"#,
            i % 60
        ));
    }
    let mut usage = vec![usage_header()];
    for i in 0..rows {
        usage.push(format!(
            "u-{i},2026-01-31T22:{:02}:00Z,race,hq,,calling,local,outbound,,,60,,,,,,",
            i % 60
        ));
    }
    let feed = write_dir(
        &tmp.path().join("feed"),
        &[
            ("events.jsonl", &events.join("\n")),
            ("usage.csv", &usage.join("\n")),
        ],
    );
    let scenario = write_dir(&tmp.path().join("scenario"), &[("scenario.toml", SCENARIO)]);
    let mut outcomes = std::collections::BTreeSet::new();
    for db in TestDb::all().await {
        for round in 0..6 {
            let fresh = db.another().await;
            load(&fresh.url, &scenario);
            run_due(&fresh.url, "2026-01-15T00:00:00Z");
            let loader = Command::new(bin())
                .args(["--database", &fresh.url, "load"])
                .arg(&feed)
                .env("BILLRUN_LOG", "warn")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(round * 40));
            run_due(&fresh.url, "2026-02-01T00:00:00Z");
            let out = loader.wait_with_output().unwrap();
            assert!(
                matches!(out.status.code(), Some(0 | 3)),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            run_due(&fresh.url, "2026-03-01T00:00:00Z");
            let at = tmp.path().join(format!("race-{}-{round}", db.backend));
            dump(&fresh.url, &at);
            let billed = csv_rows(&at.join("invoices.csv"))
                .iter()
                .filter(|r| r[3] == "2026-02-01" && r[7] == "credit_purchase")
                .count();
            let refused = csv_rows(&at.join("rejections.csv"))
                .iter()
                .filter(|r| r[3].starts_with("its period is already closed"))
                .count();
            assert_eq!(
                (billed, refused),
                if billed == 0 {
                    (0, purchases)
                } else {
                    (purchases, 0)
                },
                "{} round {round}: purchases billed {billed}, refused {refused}",
                db.backend
            );
            let records = csv_rows(&at.join("usage_records.csv"));
            assert_eq!(records.len(), rows + 1, "every row rated once");
            let late: std::collections::BTreeSet<&str> =
                records[1..].iter().map(|r| r[15].as_str()).collect();
            assert_eq!(
                late.len(),
                1,
                "one load is one transaction: all in the close or all late"
            );
            outcomes.insert((billed == 0, late.contains("true")));
        }
    }
    // Refused purchases and late usage go together: both mean the close came first.
    assert!(
        outcomes.iter().all(|(refused, late)| refused == late),
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_figure_beyond_the_store_parks_its_company_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = SCENARIO
        .replace("unit_price = \"10.00\"", "unit_price = \"900000000000.00\"")
        .replace("quantity = 2", "quantity = 100000");
    let dir = write_dir(&tmp.path().join("huge"), &[("scenario.toml", &huge)]);
    for db in TestDb::all().await {
        load(&db.url, &dir);
        let out = billrun()
            .args([
                "--database",
                &db.url,
                "run-due",
                "--as-of",
                "2026-01-02T00:00:00Z",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("beyond the range the store keeps"),
            "{stderr}"
        );
        let at = tmp.path().join(db.backend);
        dump(&db.url, &at);
        let docs: Vec<String> = csv_rows(&at.join("invoices.csv"))[1..]
            .iter()
            .map(|r| r[1].clone())
            .collect();
        assert_eq!(
            docs,
            ["calm"],
            "{}: calm is invoiced, race is parked",
            db.backend
        );
    }
}

/// A run-due killed mid-work by SIGKILL is followed at once by one that finishes everything:
/// the dead holder's leases are taken over without waiting for them to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_due_right_after_a_kill_finishes_the_work() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = generated(tmp.path(), "300", "20000");
    let as_of = "2026-03-15T00:00:00Z";
    for db in TestDb::all().await {
        let clean = db.another().await;
        load(&clean.url, &fx);
        run_due(&clean.url, as_of);
        let want = dumped(
            &clean.url,
            &tmp.path().join(format!("clean-{}", db.backend)),
        );
        load(&db.url, &fx);
        for delay_ms in [150, 600] {
            let mut child = Command::new(bin())
                .args(["--database", &db.url, "run-due", "--as-of", as_of])
                .env("BILLRUN_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = billrun()
            .env("BILLRUN_LOG", "info")
            .args(["--database", &db.url, "run-due", "--as-of", as_of])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = dumped(&db.url, &tmp.path().join(format!("after-{}", db.backend)));
        let unordered = |files: Vec<(String, Vec<Vec<String>>)>| {
            files
                .into_iter()
                .map(|(name, mut rows)| {
                    if name == "ledger.csv" {
                        rows.iter_mut().for_each(|r| {
                            r.remove(0);
                        });
                    }
                    rows.sort();
                    (name, rows)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(unordered(got), unordered(want), "{}", db.backend);
    }
}

/// Runs `run-due --as-of as_of` with the fail point `fault` armed; it must fail.
fn run_due_failing(url: &str, fault: &str, as_of: &str) {
    let out = billrun()
        .env("BILLRUN_FAILPOINT", fault)
        .args(["--database", url, "run-due", "--as-of", as_of])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{fault}");
}

/// With more companies than two chunks hold, a run that fails or panics in its first chunk
/// still runs the chunk beside it to its end, so that no company is left leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_gives_back_the_leases_of_every_chunk_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let month = tmp.path().join("month");
    billrun()
        .args([
            "gen",
            "--companies",
            "300",
            "--events",
            "600",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&month)
        .assert()
        .success();
    let companies: Vec<billrun::domain::words::CompanyId> =
        (0..300).map(|c| format!("co{c:05}").into()).collect();
    for db in TestDb::all().await {
        load(&db.url, &month);
        for fault in ["error:close-chunk:co00000", "panic:close-chunk:co00000"] {
            run_due_failing(&db.url, fault, "2026-03-01T12:00:00Z");
            let store = db.store().await;
            let holders = with_store!(&store, s => s.lease_holders(&companies).await.unwrap());
            assert!(
                holders.len() >= 256,
                "{fault}: {} leases taken",
                holders.len()
            );
            let held: Vec<_> = holders.iter().filter(|l| l.held()).collect();
            assert!(held.is_empty(), "{fault}: {} still leased", held.len());
        }
    }
}

/// A run that fails, or panics, gives its leases back on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_gives_its_leases_back() {
    for db in TestDb::all().await {
        load(&db.url, &fixture("credits-wallets"));
        for fault in ["error:close-chunk", "panic:close-chunk"] {
            run_due_failing(&db.url, fault, "2026-02-02T00:00:00Z");
            let store = db.store().await;
            let holders = with_store!(&store, s => s
                .lease_holders(&["alpha".into(), "beta".into()])
                .await
                .unwrap());
            assert_eq!(holders.len(), 2, "{fault}");
            for lease in holders {
                assert!(!lease.held(), "{fault}: {} still leased", lease.company);
            }
        }
        run_due(&db.url, "2026-02-02T00:00:00Z");
    }
}

/// One load of a scenario, events and usage: a usage row is priced by the product its user
/// held when it occurred, after the load's own events (tara holds Talk, whose local calls are
/// free, until her license is unassigned at 09:30).
#[test]
fn usage_is_priced_by_the_product_held_after_the_loads_own_events() {
    let tmp = tempfile::tempdir().unwrap();
    let url = crate::support::sqlite_url(tmp.path());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rating");
    let scenario = std::fs::read_to_string(fixture.join("scenario.toml")).unwrap();
    let call = |id: &str, at: &str| {
        format!("{id},{at},rco,hq,tara,calling,local,outbound,+12125550301,+12125550201,61,,,,,,")
    };
    let usage = [
        usage_header(),
        call("before", "2026-03-02T09:00:00Z"),
        call("after", "2026-03-02T10:00:00Z"),
    ]
    .join("\n");
    let events = r#"{"at": "2026-03-02T09:30:00Z", "type": "license_unassign", "company": "rco", "user": "tara"}"#;
    let dir = write_dir(
        &tmp.path().join("in"),
        &[
            ("scenario.toml", &scenario),
            ("events.jsonl", events),
            ("usage.csv", &usage),
        ],
    );
    let (code, stderr) = load_logged(&url, &dir);
    assert_eq!(code, Some(0), "{stderr}");
    run_due(&url, "2026-04-01T12:00:00Z");
    let out = tmp.path().join("dump");
    dump(&url, &out);
    let rates: Vec<(String, String)> = csv_rows(&out.join("usage_records.csv"))
        .into_iter()
        .skip(1)
        .map(|r| (r[0].clone(), r[11].clone()))
        .collect();
    assert_eq!(
        rates,
        [("before", "0.0000"), ("after", "0.0200")].map(|(id, rate)| (id.into(), rate.into()))
    );
}

/// A usage row recorded before rows kept the digest of their columns holds the columns
/// themselves: a feed repeating it is still a no-op, and one changing it is still refused.
#[tokio::test]
async fn a_row_stored_with_its_columns_is_still_told_from_a_conflict() {
    let line = "a-101,2026-02-03T15:00:00Z,acme,nyc,ada,calling,domestic,outbound,+13125550100,+12125550101,125,,,,,,";
    let columns: Vec<&str> = line.split(',').collect();
    let as_stored_before = columns[..columns.len() - 1].join("\u{1f}");
    for db in TestDb::all().await {
        let tmp = tempfile::tempdir().unwrap();
        load(&db.url, &fixture("demo"));
        // The columns hold no quote, so they are written into the statement as they are.
        let updated = db
            .execute(&format!(
                "UPDATE usage SET content = '{as_stored_before}' WHERE id = 'a-101'"
            ))
            .await;
        assert_eq!(updated, 1, "{}", db.backend);
        let feed = |name: &str, row: &str| {
            write_dir(
                &tmp.path().join(name),
                &[("usage.csv", &format!("{}\n{row}\n", usage_header()))],
            )
        };
        let (code, stderr) = load_logged(&db.url, &feed("same", line));
        assert_eq!(code, Some(0), "{}: {stderr}", db.backend);
        assert!(stderr.contains("duplicates=1"), "{}: {stderr}", db.backend);
        let (code, stderr) =
            load_logged(&db.url, &feed("changed", &line.replace(",125,", ",126,")));
        assert_eq!(code, Some(3), "{}: {stderr}", db.backend);
        assert!(
            stderr.contains("duplicate id a-101 with different content"),
            "{}: {stderr}",
            db.backend
        );
    }
}
