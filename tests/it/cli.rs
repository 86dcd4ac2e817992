//! The command line: exit codes, load errors that name file, line and field, and nothing
//! half-written.

use std::path::Path;

use crate::support::{billrun, csv_rows, fixture, run_due, sqlite_url};

fn copy_fixture(name: &str, to: &Path) {
    for f in ["scenario.toml", "events.jsonl", "usage.csv"] {
        std::fs::copy(fixture(name).join(f), to.join(f)).unwrap();
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Loads a broken copy of the demo and checks the message and that nothing was written.
fn assert_load_fails(break_it: impl Fn(&Path), want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    copy_fixture("demo", &input);
    break_it(&input);
    let url = sqlite_url(dir.path());
    let out = billrun()
        .args(["--database", &url, "load"])
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(want),
        "stderr {stderr:?} should contain {want:?}"
    );
    // Nothing half-loaded: the database holds no company.
    let dump = dir.path().join("dump");
    billrun()
        .args(["--database", &url, "dump", "--out"])
        .arg(&dump)
        .assert()
        .success();
    assert_eq!(
        csv_rows(&dump.join("licenses.csv")).len(),
        1,
        "no pool may be recorded"
    );
    assert_eq!(csv_rows(&dump.join("rejections.csv")).len(), 1);
}

#[test]
fn bad_scenario_is_refused_with_file_line_and_field() {
    assert_load_fails(
        |d| {
            edit(
                &d.join("scenario.toml"),
                "anchor = \"2026-01-31\"",
                "anchor = \"2026-01-32\"",
            )
        },
        "scenario.toml:",
    );
    assert_load_fails(
        |d| {
            edit(
                &d.join("scenario.toml"),
                "anchor = \"2026-01-31\"",
                "anchor = \"2026-01-32\"",
            )
        },
        ": company.anchor: \"2026-01-32\" is not a date",
    );
    assert_load_fails(
        |d| {
            edit(
                &d.join("scenario.toml"),
                "[[office]]",
                "[[office]]\nfloor = 3",
            )
        },
        "office.floor: unknown key",
    );
}

#[test]
fn bad_events_and_usage_are_refused_whole() {
    assert_load_fails(
        |d| {
            let p = d.join("events.jsonl");
            let mut text = std::fs::read_to_string(&p).unwrap();
            text.push_str("{\"at\": \"2026-12-01T00:00:00Z\", \"type\": \"license_purchase\", \"company\": \"acme\", \"office\": \"nyc\", \"product\": \"talk_pro\", \"quantity\": -1}\n");
            std::fs::write(p, text).unwrap();
        },
        ": quantity: -1 must be a whole number greater than zero",
    );
    assert_load_fails(
        |d| std::fs::write(d.join("usage.csv"), "id,occurred_at\n").unwrap(),
        "usage.csv:1: header: expected id,occurred_at,company",
    );
}

#[test]
fn unreadable_or_repeated_input_is_refused_with_its_line() {
    assert_load_fails(
        |d| {
            let p = d.join("events.jsonl");
            let mut bytes = std::fs::read(&p).unwrap();
            let third = bytes
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .nth(1)
                .unwrap()
                .0;
            bytes.insert(third + 5, 0xff);
            std::fs::write(p, bytes).unwrap();
        },
        "events.jsonl:3: -: invalid UTF-8",
    );
    assert_load_fails(
        |d| {
            edit(
                &d.join("events.jsonl"),
                "\"quantity\": 3}",
                "\"quantity\": 3, \"quantity\": 4}",
            )
        },
        "events.jsonl:1: quantity: duplicate key",
    );
    assert_load_fails(
        |d| {
            edit(
                &d.join("events.jsonl"),
                "2026-02-10T15:30:00Z",
                "2026-06-30T23:59:60Z",
            )
        },
        "events.jsonl:1: at: \"2026-06-30T23:59:60Z\" is a leap second",
    );
    assert_load_fails(
        |d| {
            edit(
                &d.join("scenario.toml"),
                "quantity = 10",
                "quantity = 2_000_000_000",
            )
        },
        ": license.quantity: 2000000000 is beyond the limit of 1000000000",
    );
}

/// A byte-order mark and CRLF line ends load the same world as the files as written.
#[test]
fn a_byte_order_mark_and_crlf_line_ends_load_alike() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    copy_fixture("demo", &input);
    for f in ["scenario.toml", "events.jsonl", "usage.csv"] {
        let p = input.join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("\u{feff}{}", text.replace('\n', "\r\n"))).unwrap();
    }
    let (plain, marked) = (dir.path().join("plain"), dir.path().join("marked"));
    for (fixture_dir, db, out) in [(fixture("demo"), "a", &plain), (input, "b", &marked)] {
        let url = sqlite_url(&dir.path().join(db));
        std::fs::create_dir(dir.path().join(db)).unwrap();
        billrun()
            .args(["--database", &url, "load"])
            .arg(&fixture_dir)
            .assert()
            .code(3);
        crate::support::dump(&url, out);
    }
    for f in ["licenses.csv", "rejections.csv"] {
        assert_eq!(csv_rows(&plain.join(f)), csv_rows(&marked.join(f)), "{f}");
    }
}

/// A production feed's events carry ids; a fixture's may go without.
#[test]
fn every_event_of_a_feed_needs_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "load"])
        .arg(fixture("demo"))
        .assert()
        .code(3);
    let feed = dir.path().join("feed");
    std::fs::create_dir(&feed).unwrap();
    let line = |id: &str| {
        format!(
            "{{{id}\"at\": \"2026-06-01T00:00:00Z\", \"type\": \"card_verified\", \"company\": \"bluebird\"}}\n"
        )
    };
    std::fs::write(
        feed.join("events.jsonl"),
        format!("{}{}", line("\"id\": \"f-1\", "), line("")),
    )
    .unwrap();
    let out = billrun()
        .args(["--database", &url, "load"])
        .arg(&feed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "events.jsonl:2: id: missing required key (every event of a feed needs an id)"
        ),
        "{stderr}"
    );
    std::fs::write(feed.join("events.jsonl"), line("\"id\": \"f-1\", ")).unwrap();
    billrun()
        .args(["--database", &url, "load"])
        .arg(&feed)
        .assert()
        .success();
}

#[test]
fn replay_without_a_scenario_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = billrun()
        .args(["replay"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scenario.toml:0: -: missing file"));
}

#[test]
fn run_due_twice_writes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "load"])
        .arg(fixture("dst-gap"))
        .assert()
        .code(3);
    run_due(&url, "2026-11-01T00:00:00Z");
    billrun()
        .args(["--database", &url, "dump", "--out"])
        .arg(dir.path().join("a"))
        .assert()
        .success();
    run_due(&url, "2026-11-01T00:00:00Z");
    billrun()
        .args(["--database", &url, "dump", "--out"])
        .arg(dir.path().join("b"))
        .assert()
        .success();
    for f in [
        "invoices.csv",
        "job_runs.csv",
        "card_charges.csv",
        "licenses.csv",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(f)).unwrap(),
            std::fs::read(dir.path().join("b").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(csv_rows(&dir.path().join("a/job_runs.csv")).len() > 10);
}

#[test]
fn unknown_company_and_bad_instants_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "migrate"])
        .assert()
        .success();
    let out = billrun()
        .args(["--database", &url, "run-due", "--as-of", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--as-of"));
    let out = billrun()
        .args(["--database", &url, "run-due", "--company", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn database_passwords_never_reach_the_output() {
    let out = billrun()
        .args([
            "--database",
            "postgres://bill:hunter2@127.0.0.1:1/nowhere",
            "migrate",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("bill:***@127.0.0.1"), "{all}");
}

/// A rejected usage row does not claim its id: once the feed sends it fixed, it is accepted
/// and rated by the next close; sending the same row again changes nothing.
#[test]
fn a_rejected_usage_row_is_rated_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "load"])
        .arg(fixture("rating"))
        .assert()
        .code(3);
    let feed = dir.path().join("feed");
    std::fs::create_dir(&feed).unwrap();
    let header = std::fs::read_to_string(fixture("rating").join("usage.csv")).unwrap();
    let header = header
        .lines()
        .next()
        .unwrap()
        .trim_start_matches('\u{feff}')
        .to_string();
    std::fs::write(
        feed.join("usage.csv"),
        format!("{header}\nx04,2026-03-17T09:00:00Z,rco,hq,sue,calling,local,outbound,+12125550307,+12125550202,5,,,,,,2026-03-18T00:00:00Z\n"),
    )
    .unwrap();
    billrun()
        .args(["--database", &url, "load"])
        .arg(&feed)
        .assert()
        .success();
    billrun()
        .args(["--database", &url, "load"])
        .arg(&feed)
        .assert()
        .success();
    run_due(&url, "2026-04-01T00:00:00Z");
    let out = dir.path().join("out");
    billrun()
        .args(["--database", &url, "dump", "--out"])
        .arg(&out)
        .assert()
        .success();
    let records = csv_rows(&out.join("usage_records.csv"));
    let fixed: Vec<_> = records.iter().filter(|r| r[0] == "x04").collect();
    assert_eq!(fixed.len(), 1, "{records:?}");
    assert_eq!(fixed[0][9], "60", "5 s billed as one 60/60 minute");
    let rejections = csv_rows(&out.join("rejections.csv"));
    assert_eq!(
        rejections.iter().filter(|r| r[2] == "x04").count(),
        1,
        "only the original rejection"
    );
}

/// The plan usage view: committed, spent and available per wallet, from the ledger.
#[test]
fn plan_usage_shows_what_each_wallet_holds() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "load"])
        .arg(fixture("credits-wallets"))
        .assert()
        .code(3);
    run_due(&url, "2026-02-20T00:00:00Z");
    let out = billrun()
        .args([
            "--database",
            &url,
            "plan-usage",
            "--company",
            "alpha",
            "--as-of",
            "2026-02-20T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["scope", "wallet", "committed", "spent", "available", "used"]
    );
    // January's AI usage spent 0.51 of the annual AI bundle's 30.00; February's a06 (23.10)
    // and a07 (6.39) are not closed yet but are priced in: the bundle is spent.
    assert!(
        lines.contains(&vec!["company", "ai", "30.00", "30.00", "0.00", "100%"]),
        "{text}"
    );
    // universal: the 10.00 purchase, a07's 3.65 and a09's 12.55, and a09's two recharges.
    assert!(
        lines.contains(&vec!["company", "universal", "-", "-", "13.80", "-"]),
        "{text}"
    );
    assert!(
        text.contains("billing period 2026-02-01 to 2026-03-01"),
        "{text}"
    );
    assert!(
        text.contains("provisional: includes 5 usage rows"),
        "{text}"
    );
    billrun()
        .args(["--database", &url, "plan-usage", "--company", "nobody"])
        .assert()
        .code(2);
}

/// plan-usage of one office under office sharing: only that scope's wallets, with May's usage
/// (not closed until Jun 1) priced in: o07 takes the 5.00 allowance, the 6.00 of osa-tel and
/// 0.50 of universal, o08 3.10 more of universal, after the 2.00 purchase of May 3.
#[test]
fn plan_usage_of_one_office_prices_the_open_period() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "load"])
        .arg(fixture("office-sharing"))
        .assert()
        .code(3);
    run_due(&url, "2026-05-20T00:00:00Z");
    let out = billrun()
        .args([
            "--database",
            &url,
            "plan-usage",
            "--company",
            "orbit",
            "--office",
            "osa",
        ])
        .args(["--as-of", "2026-05-20T00:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[1..4],
        [
            vec!["osa", "allowance:calling", "5.00", "5.00", "0.00", "100%"],
            vec!["osa", "telephony", "6.00", "6.00", "0.00", "100%"],
            vec!["osa", "universal", "-", "-", "-1.60", "-"],
        ],
        "{text}"
    );
    assert!(!text.contains("tyo"), "{text}");
    assert!(text.contains("billing period 2026-05-01 to 2026-06-01 (exclusive), amounts in USD"));
    // Every open row of the company is priced (AI usage of one office is paid by another).
    assert!(
        text.contains("provisional: includes 5 usage rows"),
        "{text}"
    );
}
