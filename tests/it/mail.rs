//! Usage emails against a real SMTP server on loopback (mailin-embedded, started by each
//! test): delivery, STARTTLS, a server down then up, a refused recipient, and a crash between
//! the server's acceptance and the mark — on both backends.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billrun::mail::{MailSettings, Sender, SmtpSettings, Transport, deliver_due};
use billrun::store::{EmailStatus, Store};
use billrun::with_store;
use chrono::Utc;
use mailin_embedded::response::{NO_MAILBOX, OK};
use mailin_embedded::{Handler, Response, Server, SslConfig};

use crate::support::{TestDb, assert_sends_at_once, billrun, block_on, csv_rows, fixture, load};

/// One email as the server received it.
#[derive(Debug, Clone)]
struct Received {
    to: Vec<String>,
    data: Vec<u8>,
}

impl Received {
    fn message_id(&self) -> String {
        let parsed = mailparse::parse_mail(&self.data).unwrap();
        mailparse::MailHeaderMap::get_first_value(&parsed.headers[..], "Message-ID").unwrap()
    }
}

/// Records what arrives; refuses the recipients in `refuse` with a 550. The server clones it
/// for each connection: what all connections received is shared, the message being received
/// is the connection's own (emails are sent over several connections at once).
#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    current: Option<Received>,
    refuse: Vec<String>,
}

impl Handler for Inbox {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.refuse.iter().any(|r| to.contains(r.as_str())) {
            NO_MAILBOX
        } else {
            OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received {
            to: to.to_vec(),
            data: Vec::new(),
        });
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(r) = self.current.as_mut() {
            r.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(r) = self.current.take() {
            self.received.lock().unwrap().push(r);
        }
        OK
    }
}

impl Inbox {
    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A free loopback port, not listening.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the SMTP server on `port` (the thread lives until the test binary ends).
fn start_server(port: u16, inbox: Inbox, tls: Option<&Tls>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut server = Server::new(inbox);
    server.with_name("localhost").with_tcp_listener(listener);
    if let Some(tls) = tls {
        server
            .with_ssl(SslConfig::SelfSigned {
                cert_path: tls.cert.clone(),
                key_path: tls.key.clone(),
            })
            .unwrap();
    }
    std::thread::spawn(move || {
        let _ = server.serve();
    });
}

/// A self-signed certificate for localhost and 127.0.0.1.
struct Tls {
    cert: String,
    key: String,
    _dir: tempfile::TempDir,
}

fn self_signed() -> Tls {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let keyp = dir.path().join("key.pem");
    std::fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
    std::fs::write(&keyp, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    Tls {
        cert: cert.display().to_string(),
        key: keyp.display().to_string(),
        _dir: dir,
    }
}

/// `run-due` of credits-wallets through 2026-04-02 with mail to `smtp`; returns the exit code.
fn run_due_mailing(url: &str, smtp: &str, extra: &[&str], failpoint: Option<&str>) -> Option<i32> {
    let mut cmd = billrun();
    cmd.args(["--database", url, "--smtp", smtp])
        .args(extra)
        .args([
            "run-due",
            "--as-of",
            "2026-04-02T00:00:00Z",
            "--lease-seconds",
            "1",
        ]);
    if let Some(p) = failpoint {
        cmd.env("BILLRUN_FAILPOINT", p);
    }
    let out = cmd.output().unwrap();
    out.status.code()
}

fn status_text(url: &str) -> String {
    let out = billrun()
        .args([
            "--database",
            url,
            "status",
            "--as-of",
            "2026-04-02T00:00:00Z",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Message-ID → how many times it arrived.
fn arrivals(inbox: &Inbox) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in inbox.all() {
        *n.entry(r.message_id()).or_default() += 1;
    }
    n
}

#[test]
fn emails_are_delivered_once_each_with_their_csv() {
    for db in block_on(TestDb::all()) {
        load(&db.url, &fixture("credits-wallets"));
        let port = free_port();
        let inbox = Inbox::default();
        start_server(port, inbox.clone(), None);
        let smtp = format!("smtp://127.0.0.1:{port}");
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        // A second run closes nothing and sends nothing.
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        let got = inbox.all();
        assert_eq!(got.len(), 6, "{}: 2 companies × 3 boundaries", db.backend);
        assert!(arrivals(&inbox).values().all(|&n| n == 1));
        let march = got
            .iter()
            .find(|r| {
                r.to.iter().any(|t| t.contains("finance@alpha.example"))
                    && r.message_id().contains(".20260301.")
            })
            .expect("alpha's March email");
        let mail = mailparse::parse_mail(&march.data).unwrap();
        let body = mail.subparts[0].get_body().unwrap();
        // February's 49.74 is at least 1.5 × January's 33.035 and 16.71 more; ai_agent rose
        // most (2.51 → 47.70).
        assert!(body.contains("Spending alert"), "{body}");
        assert!(body.contains("ai_agent rose the most"), "{body}");
        let csv = mail.subparts[1].get_body_raw().unwrap();
        assert!(csv.starts_with("\u{feff}".as_bytes()));
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(text.lines().count(), 1 + 5, "a05..a09: {text}");
        assert!(status_text(&db.url).contains("email queue: 6 sent, 0 queued, 0 failed"));
    }
}

#[test]
fn starttls_is_used_when_offered_and_the_certificate_is_checked() {
    let tls = self_signed();
    let db = block_on(TestDb::sqlite());
    load(&db.url, &fixture("credits-wallets"));
    let port = free_port();
    let inbox = Inbox::default();
    start_server(port, inbox.clone(), Some(&tls));
    let smtp = format!("smtp://localhost:{port}");
    // Without the server's certificate trusted, the upgrade fails: nothing is sent in clear.
    assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
    assert!(inbox.all().is_empty());
    let status = status_text(&db.url);
    assert!(status.contains("0 sent, 6 queued"), "{status}");
    // Trusted, the same queue goes out over TLS once the retry is due (the claim's lease
    // and the 30 s backoff are real time: drive the delivery at a later instant instead).
    let settings = MailSettings {
        transport: Transport::Smtp(SmtpSettings {
            url: smtp.clone(),
            ca_pem: Some(std::fs::read(&tls.cert).unwrap()),
        }),
        ..MailSettings::outbox("unused".into())
    };
    let store = block_on(db.store());
    let report = block_on(async {
        with_store!(&store, s => {
            let world = s.world().await.unwrap();
            let later = Utc::now() + chrono::Duration::minutes(5);
            deliver_due(s, &world.companies, &settings, &sender(), later).await.unwrap()
        })
    });
    assert_eq!(report.sent, 6, "{report:?}");
    assert_eq!(inbox.all().len(), 6);
}

fn sender() -> Sender {
    Sender {
        owner: "test".into(),
        claim: chrono::Duration::seconds(60),
    }
}

#[test]
fn server_down_the_close_commits_and_the_mail_waits_then_goes_once() {
    for db in block_on(TestDb::all()) {
        load(&db.url, &fixture("credits-wallets"));
        let port = free_port();
        let smtp = format!("smtp://127.0.0.1:{port}");
        // Nothing listens: the closes commit all the same, the emails stay queued.
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        let out = tempfile::tempdir().unwrap();
        crate::support::dump(&db.url, out.path());
        let runs = csv_rows(&out.path().join("job_runs.csv"));
        assert_eq!(runs.len() - 1, 48, "{}: every step committed", db.backend);
        let status = status_text(&db.url);
        assert!(
            status.contains("0 sent, 6 queued, 0 failed") && status.contains("after 1 tries"),
            "{status}"
        );
        let store = block_on(db.store());
        let (first_try, retry_at) = block_on(async {
            with_store!(&store, s => {
                let (_, pending) = s.email_backlog(None).await.unwrap();
                (pending[0].clone(), pending[0].next_attempt_at)
            })
        });
        assert!(first_try.last_error.is_some());
        // Before the retry is due nothing is tried; from 30 s on it is.
        let inbox = Inbox::default();
        start_server(port, inbox.clone(), None);
        let settings = MailSettings {
            transport: Transport::Smtp(SmtpSettings {
                url: smtp.clone(),
                ca_pem: None,
            }),
            ..MailSettings::outbox("unused".into())
        };
        let (early, due, again) = block_on(async {
            with_store!(&store, s => {
                let world = s.world().await.unwrap();
                let early = deliver_due(s, &world.companies, &settings, &sender(), retry_at - chrono::Duration::seconds(1)).await.unwrap();
                let due = deliver_due(s, &world.companies, &settings, &sender(), retry_at).await.unwrap();
                let again = deliver_due(s, &world.companies, &settings, &sender(), retry_at + chrono::Duration::hours(2)).await.unwrap();
                (early, due, again)
            })
        });
        assert_eq!((early.sent, due.sent, again.sent), (0, 6, 0));
        assert_eq!(inbox.all().len(), 6);
        assert!(arrivals(&inbox).values().all(|&n| n == 1));
    }
}

#[test]
fn an_email_of_a_company_the_run_does_not_know_yet_waits_and_goes_later() {
    // A run reads the company list when it starts; another instance may queue emails of a
    // company loaded since. They wait for a run that knows it instead of failing for good.
    for db in block_on(TestDb::all()) {
        load(&db.url, &fixture("credits-wallets"));
        let port = free_port();
        assert_eq!(
            run_due_mailing(&db.url, &format!("smtp://127.0.0.1:{port}"), &[], None),
            Some(0)
        );
        let outbox = tempfile::tempdir().unwrap();
        let settings = MailSettings::outbox(outbox.path().to_path_buf());
        let store = block_on(db.store());
        let (unknown, known) = block_on(async {
            with_store!(&store, s => {
                let later = Utc::now() + chrono::Duration::minutes(5);
                let none = billrun::domain::model::Companies::new();
                let unknown = deliver_due(s, &none, &settings, &sender(), later).await.unwrap();
                let world = s.world().await.unwrap();
                let much_later = later + chrono::Duration::hours(2);
                let known = deliver_due(s, &world.companies, &settings, &sender(), much_later).await.unwrap();
                (unknown, known)
            })
        });
        assert_eq!(
            (unknown.sent, unknown.retrying, unknown.failed),
            (0, 6, 0),
            "{}",
            db.backend
        );
        assert_eq!((known.sent, known.failed), (6, 0), "{}", db.backend);
        assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 6);
    }
}

#[test]
fn a_refused_recipient_is_marked_failed_and_the_others_go() {
    for db in block_on(TestDb::all()) {
        load(&db.url, &fixture("credits-wallets"));
        let port = free_port();
        let inbox = Inbox {
            refuse: vec!["owner@beta.example".into()],
            ..Default::default()
        };
        start_server(port, inbox.clone(), None);
        let smtp = format!("smtp://127.0.0.1:{port}");
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        let got = inbox.all();
        assert_eq!(got.len(), 3, "{}: alpha's three", db.backend);
        assert!(got.iter().all(|r| r.to.iter().all(|t| t.contains("alpha"))));
        let status = status_text(&db.url);
        assert!(status.contains("3 sent, 0 queued, 3 failed"), "{status}");
        assert!(status.contains("550"), "{status}");
        // A failed email is never tried again.
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        assert_eq!(inbox.all().len(), 3);
        let store = block_on(db.store());
        let statuses =
            block_on(async { with_store!(&store, s => s.email_backlog(None).await.unwrap().1) });
        assert!(statuses.iter().all(|e| e.status == EmailStatus::Failed));
    }
}

#[test]
fn a_crash_between_send_and_mark_resends_only_that_email() {
    for db in block_on(TestDb::all()) {
        load(&db.url, &fixture("credits-wallets"));
        let port = free_port();
        let inbox = Inbox::default();
        start_server(port, inbox.clone(), None);
        let smtp = format!("smtp://127.0.0.1:{port}");
        // The process dies right after the server accepted the first email.
        let code = run_due_mailing(&db.url, &smtp, &[], Some("mail:after-send"));
        assert_eq!(code, None, "{}: the process must have died", db.backend);
        assert_eq!(inbox.all().len(), 1);
        std::thread::sleep(Duration::from_millis(1300));
        assert_eq!(run_due_mailing(&db.url, &smtp, &[], None), Some(0));
        let n = arrivals(&inbox);
        assert_eq!(n.len(), 6, "{n:?}");
        let twice: Vec<_> = n.iter().filter(|(_, c)| **c == 2).collect();
        assert_eq!(twice.len(), 1, "{n:?}");
        assert!(n.values().all(|&c| c <= 2));
        assert_eq!(inbox.all()[0].message_id(), *twice[0].0);
    }
}

#[test]
fn large_attachments_go_gzipped_and_the_body_says_so() {
    let db = block_on(TestDb::sqlite());
    load(&db.url, &fixture("credits-wallets"));
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    billrun()
        .args(["--database", &db.url, "--outbox"])
        .arg(&outbox)
        .args(["--attach-gzip-above", "200"])
        .args(["run-due", "--as-of", "2026-04-02T00:00:00Z"])
        .assert()
        .success();
    let path = outbox.join("alpha-20260301-finance@alpha.example.eml");
    let bytes = std::fs::read(&path).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let body = mail.subparts[0].get_body().unwrap();
    assert!(body.contains("usage-history-2026-03-01.csv.gz"), "{body}");
    let part = &mail.subparts[1];
    assert_eq!(part.ctype.mimetype, "application/gzip");
    let gz = part.get_body_raw().unwrap();
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut csv).unwrap();
    assert!(
        csv.starts_with('\u{feff}') && csv.lines().count() == 6,
        "{csv}"
    );
}

/// The connection to the SMTP server sends the end of each message at once (`TCP_NODELAY`):
/// without it, each message's closing `.` line waited up to 40 ms for the acknowledgement of
/// its body (vendor/README.md).
#[test]
fn the_smtp_connection_sends_each_message_at_once() {
    let port = free_port();
    let inbox = Inbox::default();
    start_server(port, inbox.clone(), None);
    let settings = SmtpSettings {
        url: format!("smtp://127.0.0.1:{port}"),
        ca_pem: None,
    };
    block_on(async {
        let smtp = settings.transport(Duration::from_secs(10)).unwrap();
        let message = lettre::Message::builder()
            .from("billrun <billrun@localhost>".parse().unwrap())
            .to("admin@example.com".parse().unwrap())
            .subject("usage")
            .body(String::from("one line"))
            .unwrap();
        let sent = smtp.send(message).await;
        assert!(sent.is_ok(), "{sent:?}");
        // The connection stays in the transport's pool after the send: look at it now.
        assert_sends_at_once(
            &[std::net::SocketAddr::from(([127, 0, 0, 1], port))],
            "the SMTP server",
        );
    });
    assert_eq!(inbox.all().len(), 1);
}
