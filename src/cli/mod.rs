//! The command line: what each command does with a small [`Context`] (the database URL, the
//! clock, this process's lease token, whether stderr is a terminal), and how its outcome maps
//! to an exit status.

pub mod args;
mod commands;
mod finance;
mod metrics;
pub mod output;
mod render;

use chrono::{DateTime, Utc};

use billrun::fixture::LoadError;
use billrun::store::{Access, AnyStore, Missing, Schema, UnsupportedUrl, redact_url};

use args::{Cli, Command};

/// Exit status: all done.
pub const EXIT_OK: u8 = 0;
/// Exit status: a failure; nothing half-written.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad usage or input.
pub const EXIT_INPUT: u8 = 2;
/// Exit status: done, but some input items were rejected (they are listed).
pub const EXIT_PARTIAL: u8 = 3;
/// Exit status: work was left undone: a company is parked, or held under a lease that ran
/// out, or (`status --check`) overdue.
pub const EXIT_UNDONE: u8 = 4;

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

    /// Connects to the command's database as `access` allows. Unless the command may create
    /// it, a database without billrun's schema, or with one behind this build, is refused
    /// (exit 2): nothing else creates or migrates a database.
    pub async fn connect(&self, url: &str, access: Access) -> Result<AnyStore, Failure> {
        let shown = redact_url(url);
        let no_schema = || {
            Failure::Input(format!(
                "{shown} has no billrun schema: run `billrun migrate`"
            ))
        };
        let store = match AnyStore::open(url, &self.lease_owner, access).await {
            Ok(store) => store,
            Err(e) if e.is::<Missing>() => return Err(no_schema()),
            Err(e) if e.is::<UnsupportedUrl>() => return Err(Failure::Input(e.to_string())),
            Err(e) => return Err(Failure::Other(e.context(format!("connecting to {shown}")))),
        };
        if access == Access::Create {
            return Ok(store);
        }
        let schema = store
            .schema()
            .await
            .map_err(|e| Failure::Other(e.context(format!("reading the schema of {shown}"))));
        match schema {
            Ok(Schema::Current) => Ok(store),
            Ok(Schema::Missing) => {
                store.close().await;
                Err(no_schema())
            }
            Ok(Schema::Behind { applied, known }) => {
                store.close().await;
                Err(Failure::Input(format!(
                    "{shown} has an older billrun schema ({applied} of {known} migrations): \
                     run `billrun migrate`"
                )))
            }
            Err(e) => {
                store.close().await;
                Err(e)
            }
        }
    }

    /// A progress bar on a terminal; hidden otherwise, so logs stay plain lines.
    pub fn progress_bar(&self, what: &str) -> indicatif::ProgressBar {
        output::progress_bar(self.terminal, what, 0)
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
    ($cx:expr, $url:expr, $access:expr, $s:ident => $body:expr) => {{
        let store = $cx.connect($url, $access).await?;
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

/// Prints what `completions` and `man` generate from the command line's definition.
fn generate(command: &Command) -> Result<u8, Failure> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut cli = Cli::command();
    // Generated in memory, then written: a closed pipe is an error, not a panic.
    let mut text = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cli, "billrun", &mut text);
        }
        _ => clap_mangen::Man::new(cli)
            .render(&mut text)
            .map_err(|e| Failure::Other(anyhow::anyhow!("rendering the manual page: {e}")))?,
    }
    std::io::stdout()
        .write_all(&text)
        .map_err(|e| Failure::Other(anyhow::anyhow!("writing to stdout: {e}")))?;
    Ok(EXIT_OK)
}

/// Runs one command.
pub async fn run(cli: Cli, cx: &Context) -> Result<u8, Failure> {
    use Access::{Create, ReadOnly, Write};
    if matches!(cli.command, Command::Completions { .. } | Command::Man) {
        return generate(&cli.command);
    }
    let mail = mail_settings(&cli)?;
    let mail = &mail;
    let url = cli.database.as_str();
    match cli.command {
        Command::Migrate => on_store!(cx, url, Create, s => commands::migrate(s, url).await),
        Command::Load { fixture } => {
            commands::check_folder(&fixture)?;
            on_store!(cx, url, Create, s => commands::load(s, cx, &fixture).await)
        }
        Command::RunDue(args) => {
            on_store!(cx, url, Write, s => commands::run_due(s, cx, url, args, mail).await)
        }
        Command::Schedule(args) => commands::schedule(cx, url, args, mail).await,
        Command::Status(args) => {
            on_store!(cx, url, ReadOnly, s => commands::status(s, cx, args).await)
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
            on_store!(cx, url, ReadOnly, s => commands::plan_usage(s, cx, &company, office, as_of).await)
        }
        Command::ExportUsage(args) => {
            on_store!(cx, url, ReadOnly, s => commands::export_usage(s, cx, args).await)
        }
        Command::Rerun(args) => {
            let access = if args.dry_run { ReadOnly } else { Write };
            on_store!(cx, url, access, s => commands::rerun(s, cx, args).await)
        }
        Command::Invoice { number, format } => {
            on_store!(cx, url, ReadOnly, s => commands::invoice(s, &number, format).await)
        }
        Command::Completions { .. } | Command::Man => generate(&cli.command),
        Command::Dump { out, company } => {
            on_store!(cx, url, ReadOnly, s => commands::dump(s, cx, &out, company).await)
        }
    }
}
