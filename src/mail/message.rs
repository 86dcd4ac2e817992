//! Building a usage email: the CSV attachment (streamed to a spool file, gzip-compressed above
//! the configured size) and the MIME message with its deterministic `Message-ID`, `Date` and
//! part boundary, so the same email is the same bytes every time it is built.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::{MailSettings, SendError};
use crate::domain::model::Company;
use crate::domain::usage_email::{attachment_note, fnv1a, header_text};
use crate::domain::usage_history::HistoryQuery;
use crate::export::usage_csv::write_usage_history;
use crate::store::{QueuedEmail, Store};

/// An email's attachment, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name, `.gz` added when compressed.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The size of the CSV before compression.
    pub csv_bytes: u64,
    /// Whether it is gzip-compressed.
    pub gzipped: bool,
    /// The paragraph of the body that names it.
    pub note: String,
}

/// Streams the CSV `query` asks for to a spool file, then attaches it as it is or, above
/// `gzip_above` bytes, gzip-compressed. A copy of the CSV goes to `export_copy` if given.
pub async fn build_attachment<S: Store>(
    store: &S,
    company: &Company,
    query: &HistoryQuery,
    name: &str,
    gzip_above: u64,
    export_copy: Option<&Path>,
) -> anyhow::Result<Attachment> {
    let mut spool = tempfile::tempfile().context("creating a spool file")?;
    write_usage_history(
        store,
        company,
        query,
        std::io::BufWriter::with_capacity(1 << 16, &mut spool),
    )
    .await?;
    let csv_bytes = spool.metadata()?.len();
    if let Some(path) = export_copy {
        copy_atomically(&mut spool, path)?;
    }
    use std::io::Seek;
    spool.rewind()?;
    let gzipped = csv_bytes > gzip_above;
    let bytes = if gzipped {
        // A fixed header (no file name, modification time 0) keeps the bytes reproducible.
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        std::io::copy(&mut spool, &mut gz)?;
        gz.finish()?
    } else {
        let mut buf = Vec::with_capacity(csv_bytes as usize);
        spool.read_to_end(&mut buf)?;
        buf
    };
    Ok(Attachment {
        name: if gzipped {
            format!("{name}.gz")
        } else {
            name.to_string()
        },
        bytes,
        csv_bytes,
        gzipped,
        note: attachment_note(name, csv_bytes, gzip_above),
    })
}

fn copy_atomically(spool: &mut std::fs::File, path: &Path) -> anyhow::Result<()> {
    use std::io::Seek;
    spool.rewind()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::copy(spool, &mut tmp)?;
    tmp.flush()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The MIME message of `email`: the summary and the attachment note as plain text, then the
/// attachment. `Date` is `now` (the simulated clock in a replay); the part boundary is
/// derived from the `Message-ID`, so a rebuilt email is the same bytes.
pub fn build_message(
    settings: &MailSettings,
    email: &QueuedEmail,
    attachment: &Attachment,
    now: DateTime<Utc>,
) -> Result<Message, SendError> {
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| SendError::Transient(format!("the From address {:?}: {e}", settings.from)))?;
    let to: Mailbox = email.recipient.parse().map_err(|e| {
        SendError::Permanent(format!(
            "{:?} is not an email address: {e}",
            email.recipient
        ))
    })?;
    let body = format!("{}{}", email.summary, attachment.note);
    let content_type = if attachment.gzipped {
        "application/gzip"
    } else {
        "text/csv; charset=utf-8"
    };
    let content_type = ContentType::parse(content_type)
        .map_err(|e| SendError::Permanent(format!("content type: {e}")))?;
    let boundary = format!("=_billrun_{:016x}", fnv1a(email.message_id.as_bytes()));
    Message::builder()
        .from(from)
        .to(to)
        .subject(header_text(&email.subject))
        .message_id(Some(email.message_id.clone()))
        .date(now.into())
        .multipart(
            MultiPart::mixed()
                .boundary(boundary)
                .singlepart(SinglePart::plain(body))
                .singlepart(
                    lettre::message::Attachment::new(attachment.name.clone())
                        .body(attachment.bytes.clone(), content_type),
                ),
        )
        .map_err(|e| SendError::Permanent(format!("building the message: {e}")))
}
