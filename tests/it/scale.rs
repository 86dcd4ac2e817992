//! The fast paths of a close at scale: a generated month gives the same files however its
//! close is cut up (one run, a run per company, a run per boundary, a run per step), and the
//! tables that grow with usage are keyed by company first, so that the database can be
//! split by company.

use std::collections::BTreeMap;
use std::path::Path;

use billrun::store::Store;

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
    /// The anchors, then one `run-due --job` per step of the month, then what is left, as
    /// the benchmark does.
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
            // A step run closes the first open boundary only: a company with two due by
            // the month's end (an anchor late in a time zone east of UTC) has one left.
            run_due(url, outbox, &["--as-of", MONTH_END]);
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
    same_dump_however_closed(
        5,
        2000,
        &[Cut::Whole, Cut::PerCompany, Cut::PerBoundary, Cut::PerStep],
    )
    .await;
}

/// More companies than two chunks of a close hold (128 each, two in flight): the chunks
/// computed and committed side by side close every company as the runs cut up do.
#[tokio::test(flavor = "multi_thread")]
async fn a_month_of_several_chunks_in_flight_dumps_the_same_however_closed() {
    same_dump_however_closed(300, 3000, &[Cut::Whole, Cut::PerBoundary, Cut::PerStep]).await;
}

/// Generates a month of `companies` and `events` usage rows, closes it as each of `cuts`
/// says on a database of its own, per backend, and checks that every dump is the first's.
async fn same_dump_however_closed(companies: usize, events: usize, cuts: &[Cut]) {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("month");
    billrun()
        .args(["gen", "--companies"])
        .arg(companies.to_string())
        .arg("--events")
        .arg(events.to_string())
        .args(["--seed", "7", "--out"])
        .arg(&fixture)
        .assert()
        .success();
    for first in TestDb::all().await {
        let mut reference: Option<BTreeMap<String, Vec<Vec<String>>>> = None;
        for &cut in cuts {
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
            assert!(
                rated > events * 95 / 100,
                "{name}: only {rated} usage rows rated"
            );
            // Every company's month is closed: each has its usage-email step.
            let emailed: std::collections::BTreeSet<&String> = files["job_runs.csv"]
                .iter()
                .filter(|r| r[0] == "usage-email")
                .map(|r| &r[1])
                .collect();
            assert_eq!(emailed.len(), companies, "{name}: companies closed");
            assert!(
                files["invoices.csv"].len() > 2 * companies,
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

/// The tables that grow with usage: a distributed database splits each by `company_id`.
const GROWING: &[&str] = &[
    "usage",
    "usage_ratings",
    "ledger_entries",
    "usage_spend",
    "invoices",
    "invoice_lines",
    "usage_emails",
    "events",
];

/// Per table, its primary key and unique indexes: (name, first column).
type Keys = BTreeMap<String, Vec<(String, String)>>;

async fn sqlite_keys(url: &str) -> Keys {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let mut keys = Keys::new();
    for table in GROWING {
        let mut found = Vec::new();
        // The primary key, whether a rowid alias or an index of its own.
        let pk: Option<String> = sqlx::query_scalar(
            "SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk LIMIT 1",
        )
        .bind(table)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        if let Some(first) = pk {
            found.push(("primary key".to_string(), first));
        }
        let unique: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM pragma_index_list($1) WHERE \"unique\" = 1 AND origin <> 'pk'",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for index in unique {
            let first: String =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) WHERE seqno = 0")
                    .bind(&index)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            found.push((index, first));
        }
        keys.insert(table.to_string(), found);
    }
    keys
}

async fn postgres_keys(url: &str) -> Keys {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, String, bool, String)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, x.indisprimary, a.attname::text \
         FROM pg_index x \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] \
         WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace \
           AND t.relname = ANY($1)",
    )
    .bind(GROWING)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut keys = Keys::new();
    for (table, index, primary, first) in rows {
        let name = if primary {
            "primary key".to_string()
        } else {
            index
        };
        keys.entry(table).or_default().push((name, first));
    }
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_that_grow_with_usage_lead_every_key_with_the_company() {
    for db in TestDb::all().await {
        billrun::with_store!(&db.store().await, s => s.migrate().await.unwrap());
        let keys = match db.backend {
            "sqlite" => sqlite_keys(&db.url).await,
            _ => postgres_keys(&db.url).await,
        };
        for table in GROWING {
            let found = keys.get(*table).cloned().unwrap_or_default();
            assert!(
                found.iter().any(|(name, _)| name == "primary key"),
                "{}: {table} has no primary key",
                db.backend
            );
            for (name, first) in found {
                assert_eq!(
                    first, "company_id",
                    "{}: {table}'s {name} leads with {first}, not company_id",
                    db.backend
                );
            }
        }
    }
}

/// Every join of the store's SQL matches rows of one company: its `ON` names `company_id`.
#[test]
fn the_stores_joins_stay_within_a_company() {
    let mut files = Vec::new();
    for dir in ["sql/queries", "src/store"] {
        for entry in std::fs::read_dir(crate::support::repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql" || e == "rs") {
                files.push(path);
            }
        }
    }
    let mut joins = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let Some(at) = line.find("JOIN ") else {
                continue;
            };
            let clause = &line[at..];
            if !clause.contains(" ON ") {
                continue;
            }
            joins += 1;
            assert!(
                clause.contains("company_id ="),
                "{}:{}: a join not on company_id: {}",
                path.display(),
                i + 1,
                line.trim()
            );
        }
    }
    assert!(
        joins >= 3,
        "only {joins} joins found: is the scan looking in the right place?"
    );
}
