//! `jobs/schedule.toml`: when the daemon wakes up, how long running work may take to finish
//! after a stop, and how long its leases last.

use std::time::Duration;

use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

/// `jobs/schedule.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// When to wake up, in UTC: six fields, seconds first (`0 */5 * * * *`).
    pub cron: String,
    /// How long running work may take to finish after SIGTERM or SIGINT.
    pub grace: Duration,
    /// How long a company lease lasts without renewal.
    pub lease: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cron: String,
    #[serde(default = "default_grace")]
    grace_seconds: u64,
    #[serde(default = "default_lease")]
    lease_seconds: u64,
}

fn default_grace() -> u64 {
    120
}

fn default_lease() -> u64 {
    30
}

/// Checks a cron expression as the scheduler will read it: six fields, seconds first, day of
/// month AND day of week. The error names the expression and the reason.
pub fn check_cron(expr: &str) -> Result<(), String> {
    if expr.split_whitespace().count() != 6 {
        return Err(format!(
            "invalid cron expression {expr:?}: expected 6 fields (seconds first, e.g. \"0 */15 * * * *\"), found {}",
            expr.split_whitespace().count()
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// A schedule file that can't be used: `<file>:<line>: <field>: <message>`, like every input
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}: {message}", if field.is_empty() { "-" } else { field })]
pub struct ConfigError {
    /// The file's name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The setting at fault, or empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Reads and checks a schedule file.
pub fn parse_config(file: &str, src: &str) -> Result<ScheduleConfig, ConfigError> {
    let error = |line: usize, field: &str, message: String| ConfigError {
        file: file.to_string(),
        line,
        field: field.to_string(),
        message,
    };
    // The line of a setting: where its key starts a line, else the first line.
    let line_of_key = |key: &str| {
        src.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(1, |i| i + 1)
    };
    let raw: RawConfig = toml::from_str(src).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            src[..s.start.min(src.len())].matches('\n').count() + 1
        });
        error(line, "", e.message().trim().to_string())
    })?;
    check_cron(&raw.cron).map_err(|m| error(line_of_key("cron"), "cron", m))?;
    if !(1..=86_400).contains(&raw.lease_seconds) {
        return Err(error(
            line_of_key("lease_seconds"),
            "lease_seconds",
            "must be from 1 to 86400".to_string(),
        ));
    }
    Ok(ScheduleConfig {
        cron: raw.cron,
        grace: Duration::from_secs(raw.grace_seconds),
        lease: Duration::from_secs(raw.lease_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_are_checked_with_a_reason() {
        assert!(check_cron("0 */15 * * * *").is_ok());
        let five = check_cron("*/15 * * * *").unwrap_err();
        assert!(
            five.contains("\"*/15 * * * *\"") && five.contains("expected 6 fields"),
            "{five}"
        );
        let bad = check_cron("0 61 * * * *").unwrap_err();
        assert!(
            bad.starts_with("invalid cron expression \"0 61 * * * *\": "),
            "{bad}"
        );
    }

    #[test]
    fn schedule_files_are_strict() {
        let ok = parse_config("schedule.toml", "cron = \"0 0 * * * *\"\n").unwrap();
        assert_eq!(ok.grace, Duration::from_secs(120));
        let err =
            parse_config("schedule.toml", "cron = \"0 0 * * * *\"\ncolour = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = parse_config("schedule.toml", "# when\ncron = \"nope\"\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "cron"));
    }
}
