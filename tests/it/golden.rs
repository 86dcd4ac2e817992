//! Golden replays: every folder of `fixtures/` is replayed through the real binary, on SQLite
//! and on PostgreSQL, and each file is compared with `expected/`.

use std::path::Path;

use crate::support::{TestDb, billrun, csv_diff, csv_rows, eml_diff, postgres_url, repo};

fn fixtures() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(repo().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected").is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures found");
    dirs
}

/// Replays `fixture` (into `into` if given) and returns the differences from `expected/`.
fn replay_and_compare(fixture: &Path, into: Option<&str>) -> (Vec<String>, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = billrun();
    cmd.arg("replay").arg(fixture).arg("--out").arg(out.path());
    if let Some(url) = into {
        cmd.arg("--into").arg(url);
    }
    let output = cmd.output().unwrap();
    let expected = fixture.join("expected");
    let rejected = csv_rows(&expected.join("rejections.csv")).len() > 1;
    let mut problems = Vec::new();
    let want_code = if rejected { 3 } else { 0 };
    if output.status.code() != Some(want_code) {
        problems.push(format!(
            "{}: exit {:?}, expected {want_code}; stderr:\n{}",
            fixture.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
        return (problems, out);
    }
    for entry in std::fs::read_dir(&expected).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.extension().is_some_and(|e| e == "csv") {
            let actual = out.path().join(name);
            if !actual.exists() {
                problems.push(format!(
                    "{}: missing {}",
                    fixture.display(),
                    name.to_string_lossy()
                ));
            } else if let Some(d) = csv_diff(&path, &actual) {
                problems.push(d);
            }
        }
    }
    // The emails and their CSVs: the same files, each read as a person would.
    for dir in ["exports", "outbox"] {
        let (want, got) = (
            files_in(&expected.join(dir)),
            files_in(&out.path().join(dir)),
        );
        if want != got {
            problems.push(format!(
                "{}: {dir}/ holds {got:?}, expected {want:?}",
                fixture.display()
            ));
            continue;
        }
        for name in want {
            let (e, a) = (
                expected.join(dir).join(&name),
                out.path().join(dir).join(&name),
            );
            let diff = if dir == "outbox" {
                eml_diff(&e, &a)
            } else {
                csv_diff(&e, &a)
            };
            problems.extend(diff);
        }
    }
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            let bytes = std::fs::read(&path).unwrap();
            if !bytes.starts_with("\u{feff}".as_bytes()) {
                problems.push(format!("{} has no UTF-8 byte-order mark", path.display()));
            }
            if !expected.join(path.file_name().unwrap()).exists() {
                problems.push(format!(
                    "{}: no expected file for {}",
                    fixture.display(),
                    path.display()
                ));
            }
        }
    }
    (problems, out)
}

#[test]
fn every_fixture_replays_to_its_expected_files_on_sqlite() {
    let mut problems = Vec::new();
    for fixture in fixtures() {
        problems.extend(replay_and_compare(&fixture, None).0);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn every_fixture_replays_to_its_expected_files_on_postgres() {
    let Some(admin) = postgres_url() else { return };
    let mut problems = Vec::new();
    for fixture in fixtures() {
        let db = TestDb::postgres(&admin).await;
        let url = db.url.clone();
        let found = tokio::task::spawn_blocking(move || replay_and_compare(&fixture, Some(&url)).0)
            .await
            .unwrap();
        problems.extend(found);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn two_replays_write_identical_bytes() {
    let fixture = repo().join("fixtures/demo");
    let (p1, a) = replay_and_compare(&fixture, None);
    let (p2, b) = replay_and_compare(&fixture, None);
    assert!(p1.is_empty() && p2.is_empty(), "{p1:?} {p2:?}");
    let names = files_under(a.path());
    assert!(names.len() >= 7, "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("outbox/"))
            && names.iter().any(|n| n.starts_with("exports/")),
        "{names:?}"
    );
    assert_eq!(names, files_under(b.path()));
    for name in names {
        let x = std::fs::read(a.path().join(&name)).unwrap();
        let y = std::fs::read(b.path().join(&name)).unwrap();
        assert_eq!(x, y, "{name} differs between two replays");
    }
}

#[test]
fn replay_refuses_a_database_that_is_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("used.db").display());
    let fixture = repo().join("fixtures/demo");
    billrun()
        .args(["replay"])
        .arg(&fixture)
        .arg("--out")
        .arg(dir.path().join("a"))
        .args(["--into", &url])
        .assert()
        .code(3);
    let out = billrun()
        .args(["replay"])
        .arg(&fixture)
        .arg("--out")
        .arg(dir.path().join("b"))
        .args(["--into", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fresh database"));
}

/// Every file under `dir`, as paths relative to it (`outbox/x.eml`), sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The names of the files in `dir` (none if it is missing), sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
