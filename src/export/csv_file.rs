//! Writing a CSV file the way every billrun CSV is written: UTF-8 byte-order mark first,
//! quoting by the csv writer, an explicit flush, and a rename into place so a reader never
//! sees half a file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `rows` under `header` to `path` atomically.
pub fn write_csv<I, R>(path: &Path, header: &[&str], rows: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all("\u{feff}".as_bytes())?;
    {
        let mut w = csv::Writer::from_writer(&mut tmp);
        w.write_record(header)?;
        for row in rows {
            w.write_record(row)?;
        }
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
