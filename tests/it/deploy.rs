//! The deployment kit in `jobs/` installs as written: systemd accepts every unit, both services
//! stay sandboxed (exposure at most 2.0), the sysusers file creates the account, and the daemon
//! talks the `Type=notify` protocol (READY, WATCHDOG during a long run, STOPPING).

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::{fixture, load, repo};

/// The path the units, the crontab and README install the binary to.
const INSTALLED: &str = "/usr/local/bin/billrun";

/// The highest `systemd-analyze security` exposure a billrun service may have.
const MAX_EXPOSURE: f64 = 2.0;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("billrun")
}

/// `name` found on PATH. Absent, the test says so loudly and is skipped, except on CI, whose
/// machines have systemd's tools: there it fails.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI must have {name}: the deployment kit may not go unchecked");
        }
        eprintln!("NOTE: {name} is not on PATH: the units in jobs/ are NOT checked by this test");
    }
    found
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The units of `jobs/`, copied to `dir` with ExecStart pointing at the binary just built
/// (`systemd-analyze verify` checks that the program exists).
fn units_in(dir: &Path) -> Vec<PathBuf> {
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let unit = std::fs::read_to_string(&path).unwrap();
        for line in unit.lines().filter(|l| l.starts_with("ExecStart=")) {
            assert!(
                !line.contains("billrun") || line.starts_with(&format!("ExecStart={INSTALLED} ")),
                "{name}: billrun is installed as {INSTALLED}: {line}"
            );
        }
        let copy = dir.join(&name);
        std::fs::write(&copy, unit.replace(INSTALLED, &bin().display().to_string())).unwrap();
        units.push(copy);
    }
    units.sort();
    assert!(units.len() >= 3, "units in jobs/: {units:?}");
    units
}

#[test]
fn units_verify_cleanly() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let units = units_in(tmp.path());
    let out = Command::new(&analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .args(&units)
        .output()
        .unwrap();
    // verify exits 0 on unknown keys and bad values; any word from it is a complaint.
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify {units:?}: {}\n{}",
        out.status,
        text(&out)
    );
}

#[test]
fn services_are_sandboxed() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let services: Vec<PathBuf> = units_in(tmp.path())
        .into_iter()
        .filter(|u| u.extension().is_some_and(|e| e == "service"))
        .collect();
    assert!(services.len() >= 2, "{services:?}");
    for service in services {
        let out = Command::new(&analyze)
            .args(["security", "--offline=true", "--no-pager"])
            // On a 0–100 scale: exposure 2.0.
            .arg(format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32))
            .arg(&service)
            .output()
            .unwrap();
        let report = text(&out);
        let exposure: f64 = report
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for "))
            .and_then(|(_, rest)| rest.split_once(": "))
            .and_then(|(_, figure)| figure.split_whitespace().next())
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{}: no exposure figure in\n{report}", service.display()));
        assert!(
            exposure <= MAX_EXPOSURE && out.status.success(),
            "{}: exposure {exposure} (at most {MAX_EXPOSURE}), {}\n{report}",
            service.display(),
            out.status
        );
    }
}

#[test]
fn sysusers_file_creates_the_billrun_account() {
    let Some(sysusers) = tool("systemd-sysusers") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = Command::new(sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(repo().join("jobs/billrun.sysusers"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("billrun:"))
        .unwrap_or_else(|| panic!("no billrun user in\n{passwd}"))
        .split(':')
        .collect();
    assert_eq!(user[5], "/var/lib/billrun", "home: {user:?}");
    assert!(user[6].ends_with("nologin"), "shell: {user:?}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("billrun:x:{}:", user[3]))),
        "{group}"
    );
}

#[test]
fn stop_timeout_outlasts_the_grace_period() {
    let unit = std::fs::read_to_string(repo().join("jobs/billrun-scheduler.service")).unwrap();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("billrun-scheduler.service has no {key}="))
            .to_string()
    };
    let stop: u64 = setting("TimeoutStopSec").parse().unwrap();
    let schedule = std::fs::read_to_string(repo().join("jobs/schedule.toml")).unwrap();
    let config = billrun::scheduler::parse_config("schedule.toml", &schedule).unwrap();
    assert!(
        stop > config.grace.as_secs(),
        "TimeoutStopSec={stop} must outlast grace_seconds = {}",
        config.grace.as_secs()
    );
    assert_eq!(setting("Type"), "notify");
    assert!(!setting("WatchdogSec").is_empty());
}

/// What the daemon told the service manager so far, one state a line.
struct Notifications {
    socket: UnixDatagram,
    lines: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notifications {
            socket,
            lines: Vec::new(),
        }
    }

    /// Reads until `line` has been received `count` times in all; panics after `within`.
    fn wait_for(&mut self, line: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while self.lines.iter().filter(|l| *l == line).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {line} (×{count}) from the daemon within {within:?}; got {:?}",
                self.lines
            );
            match self.socket.recv(&mut buf) {
                Ok(n) => self.lines.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_string),
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading notifications: {e}"),
            }
        }
    }

    fn position(&self, line: &str) -> usize {
        self.lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line} in {:?}", self.lines))
    }
}

#[tokio::test]
async fn the_daemon_notifies_systemd_ready_watchdog_during_a_run_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    load(&url, &fixture("dst-gap"));
    let config = tmp.path().join("schedule.toml");
    // Wakes only once a year: the run at start is the one observed.
    std::fs::write(&config, "cron = \"0 0 0 1 1 *\"\ngrace_seconds = 10\n").unwrap();
    let socket = tmp.path().join("notify.sock");
    let mut notes = Notifications::bind(&socket);

    // Holding SQLite's write lock makes the daemon's first run wait for it (busy timeout 30 s):
    // a run in progress for as long as the test likes.
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();

    let mut child = Command::new(bin())
        .args(["--database", &url, "schedule", "--config"])
        .arg(&config)
        .env("BILLRUN_LOG", "info")
        .env("NOTIFY_SOCKET", &socket)
        // Half a second: a ping every quarter second. WATCHDOG_PID unset counts as "this process".
        .env("WATCHDOG_USEC", "500000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    notes.wait_for("READY=1", 1, Duration::from_secs(30));
    notes.wait_for("STATUS=running due work", 1, Duration::from_secs(10));
    let pings_before = notes.lines.iter().filter(|l| *l == "WATCHDOG=1").count();
    notes.wait_for("WATCHDOG=1", pings_before + 4, Duration::from_secs(10));
    assert!(
        !notes
            .lines
            .contains(&"STATUS=waiting for a wake-up".to_string()),
        "the run ended while the lock was held: {:?}",
        notes.lines
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    // The run goes on once the lock is free, and ends.
    notes.wait_for("STATUS=waiting for a wake-up", 1, Duration::from_secs(30));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    notes.wait_for("STOPPING=1", 1, Duration::from_secs(20));
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
        notes.position("READY=1") < notes.position("STOPPING=1"),
        "{:?}",
        notes.lines
    );
    assert!(stderr.contains("run-due finished"), "{stderr}");
}

/// The values of `key=` lines in a unit file.
fn settings(unit: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("jobs").join(unit)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
        .collect()
}

#[test]
fn units_treat_rejections_as_success_and_undone_work_as_failure() {
    // 3 (rejected input items) is success; 4 (a company parked) must fail the unit, so that
    // OnFailure= and monitoring see it.
    assert_eq!(
        settings("billrun-run-due.service", "SuccessExitStatus"),
        ["3"]
    );
    assert!(settings("billrun-scheduler.service", "SuccessExitStatus").is_empty());
    for unit in ["billrun-run-due.service", "billrun-scheduler.service"] {
        assert_eq!(
            settings(unit, "OnFailure"),
            ["billrun-failure@%n.service"],
            "{unit}"
        );
    }
    // A bad configuration or a database to migrate: restarting cannot fix it.
    assert_eq!(
        settings("billrun-scheduler.service", "RestartPreventExitStatus"),
        ["2"]
    );
    // The cron variant stays quiet on 0 and 3 only.
    let cron = std::fs::read_to_string(repo().join("jobs/crontab")).unwrap();
    assert!(
        cron.contains("[ $s -eq 0 ] || [ $s -eq 3 ] || echo"),
        "crontab: {cron}"
    );
}
