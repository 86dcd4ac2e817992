//! The outbox folder: each email as an `.eml` file under a deterministic name, written to a
//! temporary file and renamed into place, so a reader never sees half an email and a resend
//! replaces the file instead of adding one.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::domain::usage_email::outbox_file_name;
use crate::store::QueuedEmail;

/// Writes `bytes` as `email`'s file in `dir` (created if missing).
pub fn write(dir: &Path, email: &QueuedEmail, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(outbox_file_name(
        &email.company,
        email.boundary,
        &email.recipient,
    ));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
