//! Delivering the usage emails the `usage-email` step queued: each due email is claimed, its
//! CSV attachment streamed from the store, the message built, and handed to the outbox folder
//! or an SMTP server; then its outcome is recorded. A server that is down leaves the email
//! queued with a later due instant (30 s, doubling to an hour); a permanent refusal marks it
//! failed with the reason, and the others still go.
//!
//! Sending is at least once, never lost: an email is marked sent only after the server
//! accepted it, so a crash in between sends that one email again, with the same
//! `Message-ID`, once its claim runs out. Nothing here reads the wall clock: the caller
//! passes "now".

mod message;
mod outbox;
mod smtp;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lettre::Message;

use crate::domain::model::Companies;
use crate::domain::usage_email::retry_delay;
use crate::domain::usage_history::{HistoryFilter, HistoryQuery, Selection, exports_file_name};
use crate::store::{EmailOutcome, QueuedEmail, Store};

pub use message::{Attachment, build_attachment, build_message};
pub use smtp::SmtpSettings;

/// Where emails go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `.eml` files in a folder.
    Outbox(PathBuf),
    /// An SMTP server.
    Smtp(SmtpSettings),
}

/// How emails are built and sent.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Where they go.
    pub transport: Transport,
    /// The `From` address.
    pub from: String,
    /// A CSV larger than this many bytes is attached gzip-compressed.
    pub gzip_above: u64,
    /// How long one send may take before it counts as failed for now.
    pub timeout: Duration,
    /// Where a copy of each attached CSV is written (a replay's `exports/`).
    pub exports: Option<PathBuf>,
}

/// The default size above which a CSV attachment is gzip-compressed: 10 MiB.
pub const DEFAULT_GZIP_ABOVE: u64 = 10 * 1024 * 1024;

impl MailSettings {
    /// Emails to the outbox folder `dir`, with the defaults.
    pub fn outbox(dir: PathBuf) -> MailSettings {
        MailSettings {
            transport: Transport::Outbox(dir),
            from: "billrun <billrun@localhost>".to_string(),
            gzip_above: DEFAULT_GZIP_ABOVE,
            timeout: Duration::from_secs(60),
            exports: None,
        }
    }
}

/// Who is delivering: the claim on each email lasts `claim` and names `owner`.
#[derive(Debug, Clone)]
pub struct Sender {
    /// This process's token.
    pub owner: String,
    /// How long a claimed email is left to this sender.
    pub claim: chrono::Duration,
}

/// What a delivery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Emails accepted by the server or written to the outbox.
    pub sent: usize,
    /// Emails that failed for now and wait for a later try.
    pub retrying: usize,
    /// Emails refused for good.
    pub failed: usize,
}

impl std::ops::AddAssign for DeliveryReport {
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
    }
}

/// Emails claimed per round trip to the database.
const BATCH: i64 = 100;

/// Emails whose attachments are read at the same time: each holds one database connection,
/// and both pools have more.
const AT_ONCE: usize = 4;

/// Sends every queued email due at `now`.
pub async fn deliver_due<S: Store>(
    store: &S,
    companies: &Companies,
    settings: &MailSettings,
    sender: &Sender,
    now: DateTime<Utc>,
) -> anyhow::Result<DeliveryReport> {
    let mut report = DeliveryReport::default();
    let smtp = match &settings.transport {
        Transport::Smtp(s) => Some(s.transport(settings.timeout)?),
        Transport::Outbox(_) => None,
    };
    if let Some(dir) = &settings.exports {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    loop {
        let batch = store
            .claim_due_emails(&sender.owner, now, now + sender.claim, BATCH)
            .await?;
        if batch.is_empty() {
            break;
        }
        // Attachments are read and messages built a few at a time, ahead of the sends; each
        // email is then sent and marked in turn, so that a crash between a send and its mark
        // repeats that one email only. The building is its own future beside the sending, so
        // it goes on while an email is written or marked.
        let (ready, mut built) = tokio::sync::mpsc::channel(1);
        let batch = &batch;
        let build = async move {
            let mut messages = futures_util::stream::iter(batch)
                .map(|email| async move {
                    (
                        email,
                        build_one(store, companies, settings, email, now).await,
                    )
                })
                .buffered(AT_ONCE);
            while let Some(message) = messages.next().await {
                if ready.send(message).await.is_err() {
                    break;
                }
            }
        };
        let send = async {
            while let Some((email, message)) = built.recv().await {
                let sent = match message {
                    Ok(message) => send_one(settings, smtp.as_ref(), email, message).await,
                    Err(e) => Err(e),
                };
                match record(store, sender, email, sent, now).await? {
                    EmailOutcome::Sent(_) => report.sent += 1,
                    EmailOutcome::Retry { .. } => report.retrying += 1,
                    EmailOutcome::Failed(_) => report.failed += 1,
                }
            }
            anyhow::Ok(())
        };
        let ((), sent) = tokio::join!(build, send);
        sent?;
    }
    Ok(report)
}

/// Records how the try of `email` went; returns the outcome.
async fn record<S: Store>(
    store: &S,
    sender: &Sender,
    email: &QueuedEmail,
    sent: Result<(), SendError>,
    now: DateTime<Utc>,
) -> anyhow::Result<EmailOutcome> {
    let outcome = match sent {
        Ok(()) => {
            crate::failpoint::hit("mail:after-send");
            EmailOutcome::Sent(now)
        }
        Err(SendError::Permanent(reason)) => {
            tracing::error!(company = %email.company, boundary = %email.boundary,
                recipient = %email.recipient, "email refused for good: {reason}");
            EmailOutcome::Failed(reason)
        }
        Err(SendError::Transient(reason)) => {
            let failures = u32::try_from(email.attempts).unwrap_or(u32::MAX);
            let next = now + retry_delay(failures);
            tracing::warn!(company = %email.company, boundary = %email.boundary,
                recipient = %email.recipient, next_try = %next, "email not sent: {reason}");
            EmailOutcome::Retry {
                error: reason,
                next,
            }
        }
    };
    if !store.finish_email(email, &sender.owner, &outcome).await? {
        tracing::warn!(company = %email.company, recipient = %email.recipient,
            "the claim on this email ran out before its outcome was recorded");
    }
    Ok(outcome)
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Try again later: a server down, a timeout, a 4xx.
    Transient(String),
    /// Never try again: a 5xx, an address that is not one.
    Permanent(String),
}

impl From<anyhow::Error> for SendError {
    fn from(e: anyhow::Error) -> Self {
        SendError::Transient(format!("{e:#}"))
    }
}

/// The message of `email`, its attachment read from the store.
async fn build_one<S: Store>(
    store: &S,
    companies: &Companies,
    settings: &MailSettings,
    email: &QueuedEmail,
    now: DateTime<Utc>,
) -> Result<Message, SendError> {
    // Companies are never removed: one missing was added since this run read the list (by a
    // load, while another instance closed it), and the next run knows it.
    let company = companies.get(&email.company).ok_or_else(|| {
        SendError::Transient(format!(
            "company {} is newer than the company list this run read",
            email.company
        ))
    })?;
    let grid = company.grid();
    let k = email.boundary_index;
    let query = HistoryQuery {
        company: company.id.clone(),
        scope: email.scope.clone(),
        selection: Selection::RatedBy {
            k,
            from: grid.boundary_at(k.saturating_sub(1)),
            until: grid.boundary_at(k),
        },
        filter: HistoryFilter::default(),
    };
    let exports = settings.exports.as_ref().map(|dir| {
        dir.join(exports_file_name(
            &company.id,
            &email.scope,
            grid.boundary_date(k),
        ))
    });
    let attachment = build_attachment(
        store,
        company,
        &query,
        &email.attachment,
        settings.gzip_above,
        exports.as_deref(),
    )
    .await?;
    build_message(settings, email, &attachment, now)
}

/// Hands `message` to the outbox folder or the SMTP server.
async fn send_one(
    settings: &MailSettings,
    smtp: Option<&smtp::Smtp>,
    email: &QueuedEmail,
    message: Message,
) -> Result<(), SendError> {
    match (&settings.transport, smtp) {
        (Transport::Outbox(dir), _) => {
            // File writes block: off the async threads, so that the next emails are built
            // meanwhile.
            let (dir, email) = (dir.clone(), email.clone());
            tokio::task::spawn_blocking(move || outbox::write(&dir, &email, &message.formatted()))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|written| written)
                .map_err(|e| SendError::Transient(format!("{e:#}")))
        }
        (Transport::Smtp(_), Some(t)) => t.send(message).await,
        (Transport::Smtp(_), None) => Err(SendError::Transient("no SMTP transport".into())),
    }
}
