//! The Prometheus textfile a run leaves for node_exporter's textfile collector: written to a
//! temporary file beside it and renamed over it, so the collector never reads half a file.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

/// What a run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// When the run ended.
    pub finished_at: DateTime<Utc>,
    /// Whether it did all its work (no company parked or left under a lease that ran out).
    pub success: bool,
    /// Companies with at least one boundary closed by the run.
    pub companies_closed: usize,
    /// Boundaries closed by the run.
    pub boundaries_closed: usize,
    /// Companies parked.
    pub parked: usize,
    /// Seconds since the oldest boundary still pending became due; 0 when none is.
    pub oldest_pending_age: f64,
    /// Usage emails waiting to be sent.
    pub email_queue: usize,
    /// How long the run took.
    pub duration: f64,
}

const LAST_SUCCESS: &str = "billrun_last_success_timestamp_seconds";

/// The textfile for `m`; `previous_success` stands when this run did not succeed.
fn render(m: &RunMetrics, previous_success: Option<f64>) -> String {
    let last_success = if m.success {
        Some(m.finished_at.timestamp() as f64)
    } else {
        previous_success
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    if let Some(t) = last_success {
        gauge(
            LAST_SUCCESS,
            "When a run last did all its work (Unix time).",
            t,
        );
    }
    gauge(
        "billrun_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        m.finished_at.timestamp() as f64,
    );
    gauge(
        "billrun_last_run_success",
        "1 when the last run did all its work, 0 when it left some undone.",
        if m.success { 1.0 } else { 0.0 },
    );
    gauge(
        "billrun_companies_closed",
        "Companies with a boundary closed by the last run.",
        m.companies_closed as f64,
    );
    gauge(
        "billrun_boundaries_closed",
        "Boundaries closed by the last run.",
        m.boundaries_closed as f64,
    );
    gauge(
        "billrun_companies_parked",
        "Companies parked by a failed step in the last run.",
        m.parked as f64,
    );
    gauge(
        "billrun_oldest_pending_boundary_age_seconds",
        "Seconds since the oldest boundary not yet closed became due (0: none).",
        m.oldest_pending_age,
    );
    gauge(
        "billrun_email_queue_depth",
        "Usage emails queued and not yet sent.",
        m.email_queue as f64,
    );
    gauge(
        "billrun_run_duration_seconds",
        "How long the last run took.",
        m.duration,
    );
    out
}

/// The last success recorded in an earlier textfile, if any.
fn previous_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
}

/// Writes the textfile at `path` atomically (readable by the collector: mode 0644).
pub fn write(path: &Path, m: &RunMetrics) -> anyhow::Result<()> {
    let text = render(m, previous_success(path));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".billrun-metrics")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("writing the metrics file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("billrun.prom");
        let mut m = RunMetrics {
            finished_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 15, 0).unwrap(),
            success: true,
            companies_closed: 2,
            boundaries_closed: 3,
            parked: 0,
            oldest_pending_age: 0.0,
            email_queue: 4,
            duration: 1.5,
        };
        write(&path, &m).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(
            first.contains("billrun_last_success_timestamp_seconds 1772324100\n"),
            "{first}"
        );
        assert!(first.contains("billrun_email_queue_depth 4\n"), "{first}");
        m.success = false;
        m.parked = 1;
        m.finished_at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 30, 0).unwrap();
        write(&path, &m).unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        assert!(
            second.contains("billrun_last_success_timestamp_seconds 1772324100\n"),
            "{second}"
        );
        assert!(
            second.contains("billrun_last_run_timestamp_seconds 1772325000\n"),
            "{second}"
        );
        assert!(second.contains("billrun_companies_parked 1\n"), "{second}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
