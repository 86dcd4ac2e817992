//! The fast paths of a close at scale: a generated month gives the same files however its
//! close is cut up (one run, a run per company, a run per boundary, a run per step), and the
//! tables that grow with usage are keyed by company first, so that the database can be
//! split by company.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{TestDb, billrun, csv_rows, load};

/// The end of the generated month's first period, for every company.
const MONTH_END: &str = "2026-03-01T12:00:00Z";

/// Runs `run-due` with `args` against `url`, sending its emails to `outbox`.
fn run_due(url: &str, outbox: &Path, args: &[&str]) {
    let out = billrun()
        .args(["--database", url, "--outbox"])
        .arg(outbox)
        .arg("run-due")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run-due {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a month is closed.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// One `run-due` for everything.
    Whole,
    /// One `run-due --company` per company.
    PerCompany,
    /// One `run-due --as-of` per stretch of the month, so each run closes a few boundaries.
    PerBoundary,
    /// The anchors, then one `run-due --job` per step of the month, as the benchmark does.
    PerStep,
}

fn close(url: &str, outbox: &Path, cut: Cut, companies: usize) {
    match cut {
        Cut::Whole => run_due(url, outbox, &["--as-of", MONTH_END]),
        Cut::PerCompany => {
            for c in 0..companies {
                let id = format!("co{c:05}");
                run_due(url, outbox, &["--as-of", MONTH_END, "--company", &id]);
            }
        }
        Cut::PerBoundary => {
            for as_of in [
                "2026-01-08T00:00:00Z",
                "2026-01-16T00:00:00Z",
                "2026-01-29T12:00:00Z",
                "2026-02-06T00:00:00Z",
                "2026-02-14T00:00:00Z",
                "2026-02-22T00:00:00Z",
                MONTH_END,
            ] {
                run_due(url, outbox, &["--as-of", as_of]);
            }
        }
        Cut::PerStep => {
            run_due(url, outbox, &["--as-of", "2026-01-29T12:00:00Z"]);
            for step in [
                "rate",
                "expire",
                "apply-removals",
                "invoice",
                "grant",
                "usage-email",
            ] {
                run_due(url, outbox, &["--as-of", MONTH_END, "--job", step]);
            }
        }
    }
}

/// The files of a dump as comparable text. The ledger's `seq` and the order of `job_runs.csv`
/// tell the order the work was done in, which the cut changes; each company's ledger entries,
/// in their order, and the set of steps run must not change.
fn dumped(dir: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut files = BTreeMap::new();
    for name in [
        "invoices.csv",
        "usage_records.csv",
        "licenses.csv",
        "card_charges.csv",
        "rejections.csv",
    ] {
        files.insert(name.to_string(), csv_rows(&dir.join(name)));
    }
    let mut ledger = csv_rows(&dir.join("ledger.csv"));
    for row in &mut ledger {
        row.remove(0);
    }
    // Stable: each company's entries keep their order.
    ledger.sort_by(|a, b| a[1].cmp(&b[1]));
    files.insert("ledger.csv".to_string(), ledger);
    let mut runs = csv_rows(&dir.join("job_runs.csv"));
    runs.sort();
    files.insert("job_runs.csv".to_string(), runs);
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_closed_in_one_run_per_company_per_boundary_or_per_step_dumps_the_same() {
    let companies = 5;
    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("month");
    billrun()
        .args([
            "gen",
            "--companies",
            "5",
            "--events",
            "2000",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&fixture)
        .assert()
        .success();
    for first in TestDb::all().await {
        let mut reference: Option<BTreeMap<String, Vec<Vec<String>>>> = None;
        for cut in [Cut::Whole, Cut::PerCompany, Cut::PerBoundary, Cut::PerStep] {
            let db = first.another().await;
            load(&db.url, &fixture);
            let name = format!("{}-{cut:?}", db.backend);
            let outbox = tmp.path().join(format!("outbox-{name}"));
            close(&db.url, &outbox, cut, companies);
            let out = tmp.path().join(format!("dump-{name}"));
            billrun()
                .args(["--database", &db.url, "dump", "--out"])
                .arg(&out)
                .assert()
                .success();
            let files = dumped(&out);
            let rated = files["usage_records.csv"].len();
            assert!(rated > 1900, "{name}: only {rated} usage rows rated");
            assert!(
                files["invoices.csv"].len() > 10,
                "{name}: too few invoice lines"
            );
            match &reference {
                None => reference = Some(files),
                Some(whole) => {
                    for (file, rows) in whole {
                        assert!(
                            &files[file] == rows,
                            "{name}: {file} differs from the month closed in one run"
                        );
                    }
                }
            }
        }
    }
}
