//! Test databases on both backends, reading the files a replay writes, and the sockets of
//! this process.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use billrun::store::{AnyStore, PgStore, SqliteStore};
use sqlx::Connection;

/// A fresh, empty database for one test; dropped (Postgres) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL server the suite may use: `BILLRUN_TEST_POSTGRES`. Unset, the Postgres half
/// of every test is skipped with a loud note; set but unreachable, the tests fail.
pub fn postgres_url() -> Option<String> {
    match std::env::var("BILLRUN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI must set BILLRUN_TEST_POSTGRES: the PostgreSQL half of the suite may not be skipped"
                );
            }
            eprintln!(
                "NOTE: BILLRUN_TEST_POSTGRES is unset: skipping the PostgreSQL backend in this test"
            );
            None
        }
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            pg: None,
        }
    }

    pub async fn postgres(admin_url: &str) -> TestDb {
        let name = format!(
            "billrun_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_micros() % 1_000_000
        );
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("BILLRUN_TEST_POSTGRES is set but PostgreSQL is unreachable: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        TestDb {
            url: with_database(admin_url, &name),
            backend: "postgres",
            _dir: None,
            pg: Some((admin_url.to_string(), name)),
        }
    }

    /// One database per available backend: SQLite always, Postgres when configured.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![TestDb::sqlite().await];
        if let Some(url) = postgres_url() {
            dbs.push(TestDb::postgres(&url).await);
        }
        dbs
    }

    /// A fresh, empty database on the same backend.
    pub async fn another(&self) -> TestDb {
        match self.pg {
            None => TestDb::sqlite().await,
            Some((ref admin, _)) => TestDb::postgres(admin).await,
        }
    }

    /// Runs `sql`, one statement without parameters, on a connection of its own; the rows it
    /// changed.
    pub async fn execute(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            "sqlite" => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            _ => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
        }
    }

    pub async fn store(&self) -> AnyStore {
        match self.backend {
            "sqlite" => AnyStore::Sqlite(SqliteStore::connect(&self.url).await.unwrap()),
            _ => AnyStore::Postgres(PgStore::connect(&self.url).await.unwrap()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Dropping needs async I/O; do it on a thread with its own small runtime so it works
            // from inside a test's runtime too.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// A CSV file's rows (header included), BOM stripped; the `description` column of
/// `invoices.csv` is free text and left out.
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    if let Some(i) = rows
        .first()
        .and_then(|h| h.iter().position(|c| c == "description"))
    {
        for r in &mut rows {
            r.remove(i);
        }
    }
    rows
}

/// Compares two CSV files row by row; returns a readable difference or None.
pub fn csv_diff(expected: &Path, actual: &Path) -> Option<String> {
    let (e, a) = (csv_rows(expected), csv_rows(actual));
    if e == a {
        return None;
    }
    let mut msg = format!(
        "{} differs from {}:\n",
        actual.display(),
        expected.display()
    );
    for (i, (x, y)) in e.iter().zip(a.iter()).enumerate() {
        if x != y {
            msg.push_str(&format!(
                "  row {i}: expected {}\n          actual   {}\n",
                x.join(","),
                y.join(",")
            ));
        }
    }
    if e.len() != a.len() {
        msg.push_str(&format!("  expected {} rows, got {}\n", e.len(), a.len()));
    }
    Some(msg)
}

/// The `billrun` binary, with a clean environment.
pub fn billrun() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("billrun").unwrap();
    cmd.env_remove("BILLRUN_DATABASE_URL")
        .env("BILLRUN_LOG", "warn");
    cmd
}

/// A SQLite database URL inside `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("db.sqlite").display())
}

/// Loads a fixture folder into `url`; rejections (exit 3) are fine.
pub fn load(url: &str, dir: &Path) {
    let out = billrun()
        .args(["--database", url, "load"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn dump(url: &str, out: &Path) {
    billrun()
        .args(["--database", url, "dump", "--out"])
        .arg(out)
        .assert()
        .success();
}

/// Runs `run-due --as-of` against `url`, expecting success.
pub fn run_due(url: &str, as_of: &str) {
    billrun()
        .args(["--database", url, "run-due", "--as-of", as_of])
        .assert()
        .success();
}

/// What an email says, as a reader sees it: its headers, its text and its attachments
/// (name, type, and CSV rows or bytes), whatever the encoding and line folding.
fn eml_view(path: &Path) -> Vec<String> {
    use mailparse::MailHeaderMap;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let mut view = Vec::new();
    for h in ["From", "To", "Subject", "Message-ID"] {
        view.push(format!(
            "{h}: {}",
            mail.headers.get_first_value(h).unwrap_or_default()
        ));
    }
    let date = mail.headers.get_first_value("Date").unwrap_or_default();
    view.push(format!("Date: {:?}", mailparse::dateparse(&date)));
    view.push(format!("type: {}", mail.ctype.mimetype));
    for part in &mail.subparts {
        let disposition = part.get_content_disposition();
        match disposition.params.get("filename") {
            None => {
                let text = part.get_body().unwrap().replace("\r\n", "\n");
                view.push(format!("text ({}):", part.ctype.mimetype));
                view.extend(text.trim_end().lines().map(|l| l.trim_end().to_string()));
            }
            Some(name) => {
                view.push(format!("attachment {name} ({})", part.ctype.mimetype));
                let raw = part.get_body_raw().unwrap();
                let text = String::from_utf8(raw).unwrap();
                assert!(
                    text.starts_with('\u{feff}'),
                    "{}: attachment without BOM",
                    path.display()
                );
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
                for r in reader.records() {
                    view.push(r.unwrap().iter().collect::<Vec<_>>().join("|"));
                }
            }
        }
    }
    view
}

/// Compares two emails as a reader sees them; returns a readable difference or None.
pub fn eml_diff(expected: &Path, actual: &Path) -> Option<String> {
    let (e, a) = (eml_view(expected), eml_view(actual));
    if e == a {
        return None;
    }
    let mut msg = format!(
        "{} differs from {}:\n",
        actual.display(),
        expected.display()
    );
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            msg.push_str(&format!(
                "  line {i}: expected {x:?}\n          actual   {y:?}\n"
            ));
        }
    }
    Some(msg)
}

/// Runs `f` on one runtime shared by the synchronous tests: a pool opened in one call is used
/// in the next, so its connections must not belong to a runtime that was shut down meanwhile.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
}

/// Every socket of this process connected to one of `servers`, and whether it has
/// `TCP_NODELAY`. Other tests open and close connections meanwhile: a descriptor closed or
/// reused between listing and asking is not a socket to `servers` and is passed over.
fn sockets_to(servers: &[SocketAddr]) -> Vec<(RawFd, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only asked for its peer and an option, both of which
        // fail harmlessly if another thread has closed it since it was listed.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if servers.contains(&peer)
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            out.push((fd, nodelay));
        }
    }
    out
}

/// Asserts that this process has a socket connected to `servers` (to `what`), and that every
/// such socket sends each write at once (`TCP_NODELAY`).
pub fn assert_sends_at_once(servers: &[SocketAddr], what: &str) {
    let sockets = sockets_to(servers);
    assert!(
        !sockets.is_empty(),
        "no socket of this process is connected to {what} at {servers:?}"
    );
    let slow: Vec<RawFd> = sockets
        .iter()
        .filter(|(_, nodelay)| !nodelay)
        .map(|(fd, _)| *fd)
        .collect();
    assert!(
        slow.is_empty(),
        "sockets to {what} without TCP_NODELAY: {slow:?} of {sockets:?}"
    );
}
