//! What an on-call engineer relies on: refusals instead of silently created databases, read-only
//! commands that never write, exit statuses that tell rejections from outages, `status --check`,
//! `schedule --check`, the metrics textfile, secrets kept out of every log line, and the
//! command line's conventions.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::support::{TestDb, billrun, block_on, fixture, load, postgres_url, sqlite_url};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every command that must find the schema, with arguments that would otherwise be fine.
fn schema_commands(dir: &Path) -> Vec<Vec<String>> {
    let d = |p: &str| dir.join(p).display().to_string();
    let schedule = fixture("..")
        .join("jobs/schedule.toml")
        .display()
        .to_string();
    [
        vec!["status".to_string()],
        vec!["dump".into(), "--out".into(), d("out")],
        vec!["run-due".into()],
        vec!["plan-usage".into(), "--company".into(), "acme".into()],
        vec![
            "export-usage".into(),
            "--company".into(),
            "acme".into(),
            "--month".into(),
            "2026-03".into(),
            "--out".into(),
            d("export.csv"),
        ],
        vec![
            "rerun".into(),
            "--company".into(),
            "acme".into(),
            "--boundary".into(),
            "2026-02-28".into(),
            "--reason".into(),
            "check".into(),
            "--by".into(),
            "ops".into(),
        ],
        vec!["invoice".into(), "acme-20260228".into()],
        vec!["schedule".into(), "--config".into(), schedule],
    ]
    .into()
}

fn assert_refused(url: &str, command: &[String]) {
    let out = billrun()
        .args(["--database", url])
        .args(command)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("has no billrun schema: run `billrun migrate`"),
        "{command:?}: {}",
        stderr(&out)
    );
}

#[test]
fn commands_refuse_a_missing_sqlite_file_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    for command in schema_commands(dir.path()) {
        assert_refused(&url, &command);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{command:?} created {left:?}");
    }
}

#[test]
fn commands_refuse_a_database_without_the_schema_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    for db in block_on(TestDb::all()) {
        if db.backend == "sqlite" {
            // An empty file: a database, but not billrun's.
            let path = db.url.trim_start_matches("sqlite://");
            std::fs::write(path, b"").unwrap();
        }
        for command in schema_commands(dir.path()) {
            assert_refused(&db.url, &command);
        }
        if db.backend == "sqlite" {
            let path = db.url.trim_start_matches("sqlite://");
            assert_eq!(std::fs::metadata(path).unwrap().len(), 0, "nothing written");
        }
    }
}

#[test]
fn a_schema_behind_this_build_must_be_migrated_first() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "migrate"])
        .assert()
        .success();
    block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let out = billrun()
        .args(["--database", &url, "run-due"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has an older billrun schema")
            && stderr(&out).contains("run `billrun migrate`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_urls_and_load_folders_are_bad_input_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let out = billrun()
        .args(["--database", "mysql://bill:hunter2@db/x", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unsupported database URL mysql://bill:***@db/x"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("hunter2"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (folder, says) in [
        (dir.path().join("nowhere"), "no such folder"),
        (empty.clone(), "no input file"),
    ] {
        let out = billrun()
            .args(["--database", &url, "load"])
            .arg(&folder)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert!(
        !dir.path().join("db.sqlite").exists(),
        "no database was created"
    );
}

#[test]
fn run_due_names_its_database_and_warns_when_it_sees_no_company() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    billrun()
        .args(["--database", &url, "migrate"])
        .assert()
        .success();
    let out = billrun()
        .args(["--database", &url, "run-due"])
        .env("BILLRUN_LOG", "info")
        .env("BILLRUN_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let warning = lines
        .iter()
        .find(|l| l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no warning: {lines:?}"));
    assert_eq!(warning["fields"]["database"], url.as_str());
    assert!(
        warning["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no companies"),
        "{warning}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["duration_s"].is_number()),
        "the run logs its duration: {lines:?}"
    );
    assert!(
        !stderr(&out).contains('\u{1b}'),
        "no colours off a terminal"
    );
}

/// The demo loaded and closed as of 2026-03-31T00:00:00Z: acme's next boundary is
/// 2026-03-31T04:00:00Z, bluebird's 2026-04-14T23:00:00Z.
fn closed_demo(url: &str, dir: &Path) {
    load(url, &fixture("demo"));
    billrun()
        .args(["--database", url, "--outbox"])
        .arg(dir.join("outbox"))
        .args(["run-due", "--as-of", "2026-03-31T00:00:00Z"])
        .assert()
        .success();
}

fn sha256(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn status_reads_a_read_only_sqlite_file_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    closed_demo(&url, dir.path());
    let file = dir.path().join("db.sqlite");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = sha256(&file);
    let dump_to = dir.path().join("dump").display().to_string();
    let export_to = dir.path().join("export.csv").display().to_string();
    for command in [
        vec!["status", "--as-of", "2026-03-01T00:00:00Z"],
        vec!["invoice", "acme-20260228"],
        vec![
            "plan-usage",
            "--company",
            "acme",
            "--as-of",
            "2026-03-01T00:00:00Z",
        ],
        vec!["dump", "--out", &dump_to],
        vec![
            "export-usage",
            "--company",
            "acme",
            "--month",
            "2026-02",
            "--out",
            &export_to,
        ],
        vec![
            "rerun",
            "--company",
            "acme",
            "--boundary",
            "2026-02-28",
            "--reason",
            "check",
            "--by",
            "ops",
            "--dry-run",
        ],
    ] {
        let out = billrun()
            .args(["--database", &url])
            .args(&command)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{command:?}: {}", stderr(&out));
    }
    assert_eq!(
        sha256(&file),
        before,
        "a read-only command wrote to the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_works_for_a_postgres_role_that_may_only_select() {
    let Some(admin) = postgres_url() else {
        return;
    };
    let db = TestDb::postgres(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    closed_demo(&db.url, dir.path());
    let role = format!("billrun_ro_{}", std::process::id());
    let database = db.url.rsplit('/').next().unwrap().to_string();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE \"{database}\" TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let ro_url = db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(ro_url, db.url, "the test URL names the postgres user");
    let status = |extra: &[&str]| {
        billrun()
            .args([
                "--database",
                &ro_url,
                "status",
                "--as-of",
                "2026-03-01T00:00:00Z",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("acme"), "{}", stdout(&out));
    let out = status(&["--check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The role can't write: a command that writes fails, and says why.
    let out = billrun()
        .args([
            "--database",
            &ro_url,
            "run-due",
            "--as-of",
            "2026-04-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    conn.close().await.unwrap();
    drop(db);
    let mut admin_conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut admin_conn)
        .await
        .unwrap();
}

#[test]
fn status_check_exits_4_when_a_boundary_is_overdue() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    closed_demo(&url, dir.path());
    let status = |args: &[&str]| {
        billrun()
            .args(["--database", &url, "status"])
            .args(args)
            .output()
            .unwrap()
    };
    // acme's next boundary is 2026-03-31T04:00:00Z.
    let on_time = status(&["--check", "--as-of", "2026-03-31T04:30:00Z"]);
    assert_eq!(on_time.status.code(), Some(0), "{}", stderr(&on_time));
    let late = status(&["--check", "--as-of", "2026-03-31T05:00:01Z"]);
    assert_eq!(late.status.code(), Some(4), "{}", stderr(&late));
    assert!(stderr(&late).contains("overdue"), "{}", stderr(&late));
    let lenient = status(&[
        "--check",
        "--max-lag",
        "2h",
        "--as-of",
        "2026-03-31T05:00:01Z",
    ]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    // Without --check an overdue boundary is only shown.
    let shown = status(&["--as-of", "2026-03-31T05:00:01Z"]);
    assert_eq!(shown.status.code(), Some(0));
    assert!(
        stdout(&shown).contains("  acme  2026-03-31  2026-03-31T04:00:00Z\n"),
        "{}",
        stdout(&shown)
    );
    let json = status(&[
        "--check",
        "--format",
        "json",
        "--company",
        "acme",
        "--as-of",
        "2026-03-31T05:00:01Z",
    ]);
    assert_eq!(json.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let companies = v["companies"].as_array().unwrap();
    assert_eq!(companies.len(), 1, "--company filters: {v}");
    assert_eq!(companies[0]["overdue"], true);
    assert_eq!(companies[0]["pending"][0]["at"], "2026-03-31T04:00:00Z");
    assert!(
        !stdout(&json).contains("bluebird"),
        "only acme, in every section: {v}"
    );
    let bad = status(&["--check", "--max-lag", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn schedule_check_prints_the_next_five_wake_ups() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schedule.toml");
    let check = |cron: &str, from: &str| {
        std::fs::write(&config, format!("cron = \"{cron}\"\n")).unwrap();
        billrun()
            .args(["schedule", "--check", "--from", from, "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = check("0 0 2 L * *", "2026-01-31T02:00:00Z");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "2026-02-28T02:00:00Z\n2026-03-31T02:00:00Z\n2026-04-30T02:00:00Z\n\
         2026-05-31T02:00:00Z\n2026-06-30T02:00:00Z\n"
    );
    let out = check("0 15 9 ? * MON#1", "2026-03-02T09:15:00Z");
    assert_eq!(
        stdout(&out).lines().next(),
        Some("2026-04-06T09:15:00Z"),
        "{}",
        stderr(&out)
    );
    let out = check("*/15 * * * *", "2026-03-01T00:00:00Z");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected 6 fields"),
        "{}",
        stderr(&out)
    );
    // The shipped schedule is valid.
    billrun()
        .args(["schedule", "--check", "--config"])
        .arg(fixture("..").join("jobs/schedule.toml"))
        .assert()
        .success();
}

#[test]
fn run_due_writes_a_metrics_textfile() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    load(&url, &fixture("demo"));
    let metrics = dir.path().join("metrics").join("billrun.prom");
    std::fs::create_dir(metrics.parent().unwrap()).unwrap();
    billrun()
        .args(["--database", &url, "--outbox"])
        .arg(dir.path().join("outbox"))
        .args([
            "run-due",
            "--as-of",
            "2026-03-01T00:00:00Z",
            "--metrics-file",
        ])
        .arg(&metrics)
        .assert()
        .success();
    let text = std::fs::read_to_string(&metrics).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("billrun_companies_closed"), 2.0);
    assert_eq!(value("billrun_boundaries_closed"), 3.0);
    assert_eq!(value("billrun_companies_parked"), 0.0);
    assert_eq!(value("billrun_email_queue_depth"), 0.0);
    assert_eq!(value("billrun_last_run_success"), 1.0);
    assert!(value("billrun_last_success_timestamp_seconds") > 1.7e9);
    // The wall clock is past the demo's later boundaries: they are pending, and old.
    assert!(value("billrun_oldest_pending_boundary_age_seconds") > 0.0);
    assert!(value("billrun_run_duration_seconds") >= 0.0);
    assert!(text.contains("# TYPE billrun_companies_parked gauge"));
    let files: Vec<_> = std::fs::read_dir(metrics.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "no temporary file left beside it");
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn passwords_never_reach_any_log_line_or_error() {
    let secret = "Zq7-s3cret";
    let port = closed_port();
    let urls = [
        format!("postgres://bill:{secret}@127.0.0.1:{port}/billing"),
        format!("postgres://bill:{secret}@x@127.0.0.1:{port}/billing"),
        format!("postgres://bill@127.0.0.1:{port}/billing?password={secret}"),
        format!("postgres://bill@127.0.0.1:{port}/billing?sslpassword={secret}&sslmode=disable"),
    ];
    for url in &urls {
        for command in [&["status"][..], &["run-due"], &["migrate"]] {
            let out = billrun()
                .args(["--database", url])
                .args(command)
                .env("BILLRUN_LOG", "trace")
                .output()
                .unwrap();
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{url} {command:?}: {all}");
            assert!(!all.contains(secret), "{url} {command:?}: {all}");
            assert!(!all.contains("s3cret"), "{url} {command:?}: {all}");
            assert!(
                all.contains("connection refused"),
                "{url} {command:?}: {all}"
            );
            assert!(all.contains("***"), "the URL is shown masked: {all}");
        }
    }
    // SMTP: a relay that refuses connections, with credentials in its URL.
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    load(&db, &fixture("credits-wallets"));
    let smtp = format!("smtp://mailer:{secret}@127.0.0.1:{port}");
    let out = billrun()
        .args(["--database", &db, "--smtp", &smtp])
        .args(["run-due", "--as-of", "2026-04-02T00:00:00Z"])
        .env("BILLRUN_LOG", "trace")
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("retrying"),
        "the emails wait for a retry: {all}"
    );
    assert!(!all.contains(secret), "{all}");
    let out = billrun()
        .args(["--database", &db, "--smtp", &smtp, "status"])
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("queued"), "{all}");
    assert!(!all.contains(secret), "{all}");
}

#[test]
fn the_command_line_documents_itself() {
    let out = billrun().arg("--help").output().unwrap();
    let help = stdout(&out);
    for needle in [
        "Exit status:",
        "4  work left undone",
        "BILLRUN_LOG",
        "NO_COLOR",
        "BILLRUN_LOG_FORMAT",
    ] {
        assert!(help.contains(needle), "{needle} in\n{help}");
    }
    let version = stdout(&billrun().arg("--version").output().unwrap());
    assert!(
        version.starts_with("billrun 0.") && version.contains("(commit "),
        "{version}"
    );
    for command in ["replay", "gen"] {
        let help = stdout(&billrun().args([command, "--help"]).output().unwrap());
        assert!(!help.contains("--database"), "{command} --help: {help}");
    }
    let bash = billrun().args(["completions", "bash"]).output().unwrap();
    assert_eq!(bash.status.code(), Some(0));
    assert!(
        stdout(&bash).contains("complete -F _billrun"),
        "{}",
        stdout(&bash)
    );
    let man = billrun().arg("man").output().unwrap();
    assert_eq!(man.status.code(), Some(0));
    assert!(stdout(&man).contains(".TH billrun 1"), "{}", stdout(&man));
    assert!(
        stdout(&man).contains("run\\-due"),
        "every command is listed"
    );
}

/// Runs `args` under a pseudo-terminal (util-linux `script`), returning what it drew.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    on_a_terminal_with(args, &[])
}

/// [`on_a_terminal`] with more environment variables.
fn on_a_terminal_with(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let Ok(script) = which("script") else {
        eprintln!(
            "NOTE: `script` (util-linux) is missing: progress bars on a terminal are not tested"
        );
        return None;
    };
    let bin = assert_cmd::cargo::cargo_bin("billrun");
    let mut line = shell_quote(&bin.display().to_string());
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let out = std::process::Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .env("BILLRUN_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{line}: {}",
        stdout(&out)
    );
    Some(stdout(&out))
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether a bar counting `what` was drawn full: `N/N what`, N > 0.
fn at_100_percent(drawn: &str, what: &str) -> bool {
    drawn.match_indices(&format!(" {what} ")).any(|(i, _)| {
        let count = drawn[..i].rsplit(' ').next().unwrap_or("");
        matches!(count.split_once('/'), Some((pos, len)) if pos == len && pos != "0")
    })
}

#[test]
fn long_commands_draw_progress_to_100_percent_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let demo = fixture("demo").display().to_string();
    let out = |p: &str| dir.path().join(p).display().to_string();
    let cases: [(Vec<String>, &str); 3] = [
        (
            vec![
                "--database".into(),
                url.clone(),
                "load".into(),
                demo.clone(),
            ],
            "usage rows",
        ),
        (
            vec![
                "--database".into(),
                url.clone(),
                "dump".into(),
                "--out".into(),
                out("d"),
            ],
            "files",
        ),
        (
            vec!["replay".into(), demo.clone(), "--out".into(), out("r")],
            "instants",
        ),
    ];
    for (args, done) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(drawn) = on_a_terminal(&args) else {
            return;
        };
        assert!(
            at_100_percent(&drawn, done),
            "{args:?}: no N/N {done:?} in {drawn:?}"
        );
        // Off a terminal: log lines only, no bar.
        let plain = billrun().args(&args).output().unwrap();
        assert!(
            matches!(plain.status.code(), Some(0 | 3)),
            "{}",
            stderr(&plain)
        );
        assert!(
            !stderr(&plain).contains(&format!(" {done} ")),
            "{}",
            stderr(&plain)
        );
    }
}

#[test]
fn log_lines_have_colours_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let args = ["--database", url.as_str(), "migrate"];
    let info = [("BILLRUN_LOG", "info")];
    let Some(coloured) = on_a_terminal_with(&args, &info) else {
        return;
    };
    // The level is drawn in colour (INFO in green).
    assert!(coloured.contains("\u{1b}[32m"), "{coloured:?}");
    let plain = on_a_terminal_with(&args, &[info[0], ("NO_COLOR", "1")]).unwrap();
    assert!(plain.contains("INFO"), "{plain:?}");
    assert!(!plain.contains("\u{1b}["), "{plain:?}");
}

#[test]
fn companies_held_by_another_instance_get_one_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    load(&url, &fixture("demo"));
    // Another host holds both companies for a long while yet.
    block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for company in ["acme", "bluebird"] {
            sqlx::query(
                "INSERT INTO company_leases (company_id, owner, fence, lease_until) \
                 VALUES ($1, 'billrun:elsewhere:4242:0', 1, $2)",
            )
            .bind(company)
            .bind(i64::MAX / 2)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    });
    let out = billrun()
        .args(["--database", &url, "--outbox"])
        .arg(dir.path().join("outbox"))
        .args(["run-due", "--as-of", "2026-03-01T00:00:00Z"])
        .env("BILLRUN_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let held: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("held by another instance"))
        .collect();
    assert_eq!(held.len(), 1, "{}", stderr(&out));
    assert!(
        held[0].contains("acme, bluebird") && held[0].contains("companies=2"),
        "{}",
        held[0]
    );
}

/// `load` and `replay` list the first 20 rejected items on stderr, then how many more there
/// are and where all of them are.
#[test]
fn rejected_items_are_listed_first_twenty_then_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("fx");
    std::fs::create_dir(&fx).unwrap();
    std::fs::copy(
        fixture("demo").join("scenario.toml"),
        fx.join("scenario.toml"),
    )
    .unwrap();
    let demo_usage = std::fs::read_to_string(fixture("demo").join("usage.csv")).unwrap();
    let mut usage = demo_usage.lines().next().unwrap().to_string() + "\n";
    for i in 1..=23 {
        usage.push_str(&format!(
            "x-{i},2026-02-03T15:00:00Z,nobody,nyc,ada,calling,domestic,outbound,\
             +13125550100,+12125550101,60,,,,,,\n"
        ));
    }
    std::fs::write(fx.join("usage.csv"), usage).unwrap();
    let url = sqlite_url(dir.path());
    let out_dir = dir.path().join("out");
    let fx_arg = fx.display().to_string();
    let out_arg = out_dir.display().to_string();
    let runs: [Vec<&str>; 2] = [
        vec!["--database", &url, "load", &fx_arg],
        vec!["replay", &fx_arg, "--out", &out_arg],
    ];
    for args in runs {
        let out = billrun().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let listed: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("rejected usage.csv:"))
            .collect();
        assert_eq!(listed.len(), 20, "{args:?}: {err}");
        assert!(
            listed[0].contains("usage.csv:2") && listed[0].contains("nobody"),
            "{err}"
        );
        assert!(
            err.contains("… and 3 more rejected (all in"),
            "{args:?}: {err}"
        );
    }
}
