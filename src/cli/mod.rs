//! The command line: what each command does with a small [`Context`] (the database URL, the
//! clock, this process's lease token, whether stderr is a terminal), and how its outcome maps
//! to an exit status.

pub mod args;
mod commands;
mod finance;
mod render;

use chrono::{DateTime, Utc};

use billrun::fixture::LoadError;
use billrun::store::{AnyStore, redact_url};

use args::{Cli, Command};

/// Exit status: all done.
pub const EXIT_OK: u8 = 0;
/// Exit status: a failure; nothing half-written.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad usage or input.
pub const EXIT_INPUT: u8 = 2;
/// Exit status: done, but some items were rejected or parked.
pub const EXIT_PARTIAL: u8 = 3;

/// What every command may use; built once by `main`.
pub struct Context {
    /// The wall clock.
    pub clock: Box<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// This process's lease token: host, process id, start. PostgreSQL sessions carry it as
    /// their name, so that other instances can see whether the holder of a lease is alive.
    pub lease_owner: String,
    /// Whether the process behind another lease token is provably gone.
    pub holder_gone: std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Whether stderr is a terminal (progress bars) .
    pub terminal: bool,
    /// The user running billrun, from the environment (`USER`, else `LOGNAME`): who a re-run
    /// records when `--by` is not given.
    pub user: Option<String>,
}

impl Context {
    /// The instant "now".
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// `--as-of` (or `--until`), or now when it is absent.
    pub fn instant_or_now(
        &self,
        flag: &str,
        value: Option<&str>,
    ) -> Result<DateTime<Utc>, Failure> {
        match value {
            Some(s) => parse_instant(flag, s),
            None => Ok(self.now()),
        }
    }

    /// Connects to the command's database.
    pub async fn connect(&self, url: &str) -> Result<AnyStore, Failure> {
        AnyStore::connect(url, &self.lease_owner)
            .await
            .map_err(|e| Failure::Other(e.context(format!("connecting to {}", redact_url(url)))))
    }

    /// A progress bar on a terminal; hidden otherwise, so logs stay plain lines.
    pub fn progress_bar(&self, what: &str) -> indicatif::ProgressBar {
        if !self.terminal {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{elapsed}}"
        )) {
            bar.set_style(style);
        }
        bar
    }
}

/// An error that decides the exit status.
pub enum Failure {
    /// Bad usage or input (exit 2).
    Input(String),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        Failure::Input(e.to_string())
    }
}

impl From<billrun::scheduler::ConfigError> for Failure {
    fn from(e: billrun::scheduler::ConfigError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// An RFC 3339 flag value.
pub fn parse_instant(flag: &str, s: &str) -> Result<DateTime<Utc>, Failure> {
    billrun::fixture::values::instant(s).map_err(|m| Failure::Input(format!("--{flag}: {m}")))
}

/// Runs `$body` against the store at `$url`, bound to `$s`, and closes the store afterwards
/// (SQLite then checkpoints its write-ahead log into the database file).
macro_rules! on_store {
    ($cx:expr, $url:expr, $s:ident => $body:expr) => {{
        let store = $cx.connect($url).await?;
        let result = billrun::with_store!(&store, $s => $body);
        store.close().await;
        result
    }};
}
pub(crate) use on_store;

/// The mail settings of the command line: SMTP when `--smtp` is set, else the outbox folder.
fn mail_settings(cli: &Cli) -> Result<billrun::mail::MailSettings, Failure> {
    use billrun::mail::{MailSettings, SmtpSettings, Transport};
    let mut settings = MailSettings::outbox(cli.outbox.clone());
    if let Some(url) = &cli.smtp {
        let ca_pem = match &cli.smtp_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| Failure::Input(format!("--smtp-ca {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let smtp = SmtpSettings {
            url: url.clone(),
            ca_pem,
        };
        // Refuse a bad URL up front, naming it without its password.
        smtp.transport(settings.timeout)
            .map_err(|e| Failure::Input(format!("--smtp: {e:#}")))?;
        settings.transport = Transport::Smtp(smtp);
    }
    settings.from = cli.mail_from.clone();
    settings.gzip_above = cli.attach_gzip_above;
    Ok(settings)
}

/// Runs one command.
pub async fn run(cli: Cli, cx: &Context) -> Result<u8, Failure> {
    let mail = mail_settings(&cli)?;
    let mail = &mail;
    let url = cli.database.as_str();
    match cli.command {
        Command::Migrate => on_store!(cx, url, s => commands::migrate(s, url).await),
        Command::Load { fixture } => {
            on_store!(cx, url, s => commands::load(s, cx, &fixture).await)
        }
        Command::RunDue(args) => {
            on_store!(cx, url, s => commands::run_due(s, cx, args, mail).await)
        }
        Command::Schedule { config } => commands::schedule(cx, url, &config, mail).await,
        Command::Status { company, as_of } => {
            on_store!(cx, url, s => commands::status(s, cx, company, as_of).await)
        }
        Command::Replay(args) => commands::replay(cx, args).await,
        Command::Gen {
            companies,
            events,
            out,
            seed,
        } => commands::gen_fixture(companies, events, seed, &out),
        Command::PlanUsage {
            company,
            office,
            as_of,
        } => {
            on_store!(cx, url, s => commands::plan_usage(s, cx, &company, office, as_of).await)
        }
        Command::ExportUsage(args) => {
            on_store!(cx, url, s => commands::export_usage(s, cx, args).await)
        }
        Command::Rerun(args) => on_store!(cx, url, s => commands::rerun(s, cx, args).await),
        Command::Invoice { number, format } => {
            on_store!(cx, url, s => commands::invoice(s, &number, format).await)
        }
        Command::Dump { out, company } => {
            on_store!(cx, url, s => commands::dump(s, &out, company).await)
        }
    }
}
