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
    let mut file = CsvFile::create(path, header)?;
    for row in rows {
        file.write(row)?;
    }
    file.finish()
}

/// A CSV file written a row at a time, as rows arrive from a stream, and put in place whole
/// by [`CsvFile::finish`]; dropped unfinished, it leaves nothing behind.
pub struct CsvFile {
    path: std::path::PathBuf,
    writer: csv::Writer<std::io::BufWriter<tempfile::NamedTempFile>>,
}

impl CsvFile {
    /// Starts `path` with the byte-order mark and `header`.
    pub fn create(path: &Path, header: &[&str]) -> anyhow::Result<CsvFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        tmp.write_all("\u{feff}".as_bytes())?;
        let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(tmp));
        writer.write_record(header)?;
        Ok(CsvFile {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Appends one row.
    pub fn write<R>(&mut self, row: R) -> anyhow::Result<()>
    where
        R: IntoIterator,
        R::Item: AsRef<[u8]>,
    {
        self.writer.write_record(row)?;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(self) -> anyhow::Result<()> {
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.path.display(), e.error()))?
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", self.path.display(), e.error()))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}
