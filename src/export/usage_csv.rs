//! The usage-history CSV: streamed from the store into the csv writer row by row, so memory
//! stays flat whatever the number of rows; a UTF-8 byte-order mark first, quoting by the csv
//! writer, text cells made formula-safe by the domain, and an explicit flush (dropping a
//! writer swallows its errors).

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::domain::model::Company;
use crate::domain::usage_history::{HistoryQuery, history_cells, history_header};
use crate::store::Store;
use indicatif::ProgressBar;

/// Writes the usage history `query` asks for to `out`; returns the number of rows.
pub async fn write_usage_history<S: Store, W: Write + Send>(
    store: &S,
    company: &Company,
    query: &HistoryQuery,
    out: W,
) -> anyhow::Result<u64> {
    write_counted(store, company, query, out, &ProgressBar::hidden()).await
}

/// [`write_usage_history`], counting the rows on `bar`.
async fn write_counted<S: Store, W: Write + Send>(
    store: &S,
    company: &Company,
    query: &HistoryQuery,
    mut out: W,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(history_header(&query.scope))?;
    let tz = company.time_zone;
    let scope = query.scope.clone();
    let rows = store
        .usage_history(query, &mut |r| {
            w.write_record(history_cells(&r, tz, &scope))?;
            bar.inc(1);
            Ok(())
        })
        .await?;
    w.flush()?;
    let mut out = w.into_inner().map_err(|e| e.into_error())?;
    out.flush()?;
    Ok(rows)
}

/// Writes the usage history to `path`, atomically: a reader sees the whole file or none.
/// `bar` counts the rows, and ends at 100 % once they are all written.
pub async fn export_usage_history<S: Store>(
    store: &S,
    company: &Company,
    query: &HistoryQuery,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let rows = write_counted(
        store,
        company,
        query,
        std::io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut()),
        bar,
    )
    .await?;
    bar.set_length(rows);
    bar.finish();
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rows)
}
