//! `export-usage`: the scope rule holds against every filter and flag, and the file opens in
//! a spreadsheet with no formula cell — on both backends.

use std::path::{Path, PathBuf};

use crate::support::{TestDb, billrun, block_on, csv_rows, fixture, load};

/// office-sharing, with names a spreadsheet would run, loaded and closed through June 1.
fn loaded(db: &TestDb, dir: &Path) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in ["scenario.toml", "events.jsonl", "usage.csv"] {
        std::fs::copy(fixture("office-sharing").join(f), input.join(f)).unwrap();
    }
    let scenario = input.join("scenario.toml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    let text = text
        .replacen(
            "\"Ryo Suzuki\"",
            "\"=HYPERLINK(\\\"http://x.example\\\",\\\"pay\\\")\"",
            1,
        )
        .replacen("\"Tokyo Reception\"", "\"@SUM(1+1)\"", 1);
    std::fs::write(&scenario, text).unwrap();
    load(&db.url, &input);
    crate::support::run_due(&db.url, "2026-06-02T00:00:00Z");
}

/// Runs export-usage with `args`; returns the exit code and the file's rows.
fn export(db: &TestDb, dir: &Path, name: &str, args: &[&str]) -> (Option<i32>, Vec<Vec<String>>) {
    let out: PathBuf = dir.join(format!("{name}.csv"));
    let o = billrun()
        .args(["--database", &db.url, "export-usage", "--company", "orbit"])
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let rows = if out.exists() {
        csv_rows(&out)
    } else {
        Vec::new()
    };
    (o.status.code(), rows)
}

#[test]
fn an_office_admin_never_gets_another_offices_rows() {
    for db in block_on(TestDb::all()) {
        let dir = tempfile::tempdir().unwrap();
        loaded(&db, dir.path());
        let month = ["--month", "2026-04"];
        let (code, all) = export(&db, dir.path(), "all", &month);
        assert_eq!(code, Some(0));
        assert_eq!(all[0][1], "Office");
        // April (local Apr 1 – May 1 in Tokyo): o01..o06, then o07 at the boundary is May's.
        assert_eq!(all.len() - 1, 6, "{}: {all:?}", db.backend);
        let osaka: Vec<Vec<String>> = all[1..]
            .iter()
            .filter(|r| r[1] == "Osaka")
            .map(|r| {
                let mut r = r.clone();
                r.remove(1);
                r
            })
            .collect();
        assert_eq!(osaka.len(), 4);
        let lead = ["--admin", "osaka-lead@orbit.example"];
        let (code, own) = export(&db, dir.path(), "own", &[&month[..], &lead[..]].concat());
        assert_eq!(code, Some(0));
        assert!(!own[0].contains(&"Office".to_string()), "no Office column");
        assert_eq!(own[1..], osaka[..], "{}", db.backend);
        // Every filter and flag, alone and together, stays inside Osaka.
        let tries: Vec<Vec<&str>> = vec![
            vec!["--office", "tyo"],
            vec!["--office", "osa"],
            vec!["--user", "hana"],
            vec!["--user", "tyo-desk"],
            vec!["--service", "calling"],
            vec!["--service", "ai_agent"],
            vec!["--wallet", "universal"],
            vec!["--wallet", "telephony"],
            vec!["--wallet", "allowance:ai_agent"],
            vec!["--min-amount", "0"],
            vec!["--max-amount", "1000000"],
            vec![
                "--user",
                "hana",
                "--service",
                "calling",
                "--min-amount",
                "0",
            ],
            vec!["--month", "2026-05"],
        ];
        for (i, extra) in tries.iter().enumerate() {
            let mut args: Vec<&str> = lead.to_vec();
            if !extra.contains(&"--month") {
                args.extend(month);
            }
            args.extend(extra.iter().copied());
            let (code, rows) = export(&db, dir.path(), &format!("try{i}"), &args);
            if extra == &vec!["--office", "tyo"] {
                assert_eq!(code, Some(2), "asking for Tokyo is refused");
                assert!(rows.is_empty());
                continue;
            }
            assert_eq!(code, Some(0), "{extra:?}");
            for r in &rows[1..] {
                let who = &r[1];
                assert!(
                    [
                        "Yuki Tanaka",
                        "'=HYPERLINK(\"http://x.example\",\"pay\")",
                        ""
                    ]
                    .contains(&who.as_str()),
                    "{}: {extra:?} leaked {r:?}",
                    db.backend
                );
            }
            if extra.first() == Some(&"--user") {
                assert_eq!(rows.len(), 1, "a Tokyo user has no Osaka rows: {extra:?}");
            }
        }
        // The company admin, asking for Tokyo, gets Tokyo.
        let (code, tokyo) = export(
            &db,
            dir.path(),
            "tokyo",
            &[
                "--month",
                "2026-04",
                "--admin",
                "finance@orbit.example",
                "--office",
                "tyo",
            ],
        );
        assert_eq!(code, Some(0));
        assert_eq!(tokyo.len() - 1, 2);
    }
}

#[test]
fn the_file_opens_in_a_spreadsheet_with_no_formula_cell() {
    let db = block_on(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    loaded(&db, dir.path());
    let (code, _) = export(&db, dir.path(), "may", &["--month", "2026-05"]);
    assert_eq!(code, Some(0));
    let bytes = std::fs::read(dir.path().join("may.csv")).unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()), "BOM first");
    let text = String::from_utf8(bytes).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut cells = 0;
    let mut names = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        names.push(record[2].to_string());
        for cell in record.iter() {
            cells += 1;
            let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
            let phone_or_number = cell
                .trim_start_matches(['+', '-'])
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.');
            assert!(!risky || phone_or_number, "formula cell {cell:?}");
        }
    }
    assert!(cells > 0);
    assert!(names.contains(&"'@SUM(1+1)".to_string()), "{names:?}");
    assert!(
        names.contains(&"'=HYPERLINK(\"http://x.example\",\"pay\")".to_string()),
        "{names:?}"
    );
    // Phone numbers stay readable.
    assert!(text.contains(",+81"), "{text}");
}

#[test]
fn a_month_before_the_anchor_or_an_unknown_admin_is_bad_input() {
    let db = block_on(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    loaded(&db, dir.path());
    for args in [
        vec!["--month", "2026-03"],
        vec!["--month", "2026-4"],
        vec!["--month", "2026-04", "--admin", "nobody@orbit.example"],
        vec!["--month", "2026-04", "--user", "ghost"],
        vec!["--month", "2026-04", "--wallet", "credits"],
    ] {
        assert_eq!(export(&db, dir.path(), "bad", &args).0, Some(2), "{args:?}");
    }
}

/// Whether a program is on the PATH. Under CI it must be (.ci/run installs it): a spreadsheet
/// check that silently does not run is no check.
fn have(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have {program}: .ci/run installs it"
        );
        eprintln!("NOTE: {program} is not installed: skipping the spreadsheet conversion");
    }
    found
}

/// LibreOffice opens the export (as UTF-8 CSV), converts it to .xlsx headless, and no cell of
/// the workbook is a formula; a raw formula in the same place would be one.
#[test]
fn libreoffice_finds_no_formula_in_an_export() {
    if !(have("soffice") && have("unzip")) {
        return;
    }
    let db = block_on(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    loaded(&db, dir.path());
    assert_eq!(
        export(&db, dir.path(), "may", &["--month", "2026-05"]).0,
        Some(0)
    );
    // The control: the same file with one name left as a formula.
    let text = std::fs::read_to_string(dir.path().join("may.csv")).unwrap();
    assert!(text.contains(",'@SUM(1+1),"), "{text}");
    std::fs::write(
        dir.path().join("raw.csv"),
        text.replace(",'@SUM(1+1),", ",=SUM(1+1),"),
    )
    .unwrap();
    let sheet = |name: &str| -> String {
        let out = std::process::Command::new("soffice")
            .args([
                "--headless",
                "--infilter=CSV:44,34,76",
                "--convert-to",
                "xlsx",
                "--outdir",
            ])
            .arg(dir.path())
            .arg(dir.path().join(format!("{name}.csv")))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let xml = std::process::Command::new("unzip")
            .args(["-p"])
            .arg(dir.path().join(format!("{name}.xlsx")))
            .arg("xl/worksheets/sheet1.xml")
            .output()
            .unwrap();
        String::from_utf8(xml.stdout).unwrap()
    };
    let exported = sheet("may");
    assert!(exported.contains("<sheetData>"), "{exported}");
    assert!(!exported.contains("<f"), "a formula cell: {exported}");
    assert!(
        sheet("raw").contains("<f"),
        "the control must hold a formula"
    );
}
