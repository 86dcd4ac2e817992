//! Standard error as people and log collectors see it: log lines scrubbed of every secret the
//! command line was given, drawn around the progress bars (never through them).

use std::io::Write;
use std::sync::{Arc, LazyLock};

use billrun::store::scrub;

/// Every progress bar of the process draws through this one, so that a log line can clear
/// the bars, print, and redraw them.
static BARS: LazyLock<indicatif::MultiProgress> = LazyLock::new(indicatif::MultiProgress::new);

/// A progress bar showing `what` on a terminal (hidden otherwise), counting to `len`.
pub fn progress_bar(terminal: bool, what: &str, len: u64) -> indicatif::ProgressBar {
    if !terminal {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} {{elapsed}}"
    )) {
        bar.set_style(style);
    }
    BARS.add(bar)
}

/// A counter of `what` on a terminal (hidden otherwise) for work whose size is known only at
/// its end, when the caller sets the length and finishes it.
pub fn progress_counter(terminal: bool, what: &str) -> indicatif::ProgressBar {
    if !terminal {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template(&format!("{{spinner}} {{pos}} {what} {{elapsed}}"))
    {
        bar.set_style(style);
    }
    BARS.add(bar)
}

/// Writes log lines to stderr, scrubbed of secrets, with the progress bars out of the way.
#[derive(Clone)]
pub struct LogWriter {
    secrets: Arc<Vec<String>>,
}

impl LogWriter {
    /// A writer hiding `secrets`.
    pub fn new(secrets: Vec<String>) -> Self {
        LogWriter {
            secrets: Arc::new(secrets),
        }
    }

    /// `text` without any secret.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole log line per call.
        let text = self.scrub(&String::from_utf8_lossy(buf));
        BARS.suspend(|| std::io::stderr().lock().write_all(text.as_bytes()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
