//! The deployment kit: the daemon talks the `Type=notify` protocol (READY, WATCHDOG during a
//! long run, STOPPING).

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::{fixture, load};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("billrun")
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
