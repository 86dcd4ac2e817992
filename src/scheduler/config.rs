//! `jobs/schedule.toml`: when the daemon wakes up, how long running work may take to finish
//! after a stop, and how long its leases last.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
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
    parse_cron(expr).map(|_| ())
}

/// Parses a cron expression exactly as tokio-cron-scheduler does for the daemon's job
/// (`Job::new_async`): its own preprocessing, then croner with seconds required and day of
/// month AND day of week.
fn parse_cron(expr: &str) -> Result<Cron, String> {
    let invalid = |e: String| format!("invalid cron expression {expr:?}: {e}");
    let expr =
        tokio_cron_scheduler::Job::schedule_to_cron(expr).map_err(|e| invalid(e.to_string()))?;
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&expr)
        .map_err(|e| invalid(e.to_string()))
}

/// The next `n` instants strictly after `from` at which the daemon wakes on `expr`, as the
/// scheduler finds each next tick: the first occurrence after the previous one, in UTC, to
/// the second.
pub fn wakeups(expr: &str, from: DateTime<Utc>, n: usize) -> Result<Vec<DateTime<Utc>>, String> {
    check_cron(expr)?;
    let cron = parse_cron(expr)?;
    let mut out = Vec::with_capacity(n);
    let mut after = from;
    while out.len() < n {
        match cron.find_next_occurrence(&after, false) {
            Ok(t) => {
                out.push(t);
                after = t;
            }
            // No later occurrence (a year-bound expression): fewer wake-ups.
            Err(_) => break,
        }
    }
    Ok(out)
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

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, from: &str) -> Vec<String> {
        wakeups(expr, at(from), 5)
            .unwrap()
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect()
    }

    #[test]
    fn wake_ups_are_strictly_after_the_start() {
        assert_eq!(
            next("0 */15 * * * *", "2026-03-01T00:15:00Z"),
            [
                "2026-03-01T00:30:00Z",
                "2026-03-01T00:45:00Z",
                "2026-03-01T01:00:00Z",
                "2026-03-01T01:15:00Z",
                "2026-03-01T01:30:00Z"
            ]
        );
    }

    #[test]
    fn wake_ups_read_last_days_weekdays_nth_names_ranges_and_steps() {
        // L: the last day of each month.
        assert_eq!(
            next("0 0 2 L * *", "2026-01-31T02:00:00Z")[..3],
            [
                "2026-02-28T02:00:00Z",
                "2026-03-31T02:00:00Z",
                "2026-04-30T02:00:00Z"
            ]
        );
        // W: the weekday nearest the 1st (Saturday 2026-08-01 → Monday 2026-08-03).
        assert_eq!(
            next("0 30 6 1W * *", "2026-07-15T00:00:00Z")[..2],
            ["2026-08-03T06:30:00Z", "2026-09-01T06:30:00Z"]
        );
        // #: the second Monday of the month, with a month name range.
        assert_eq!(
            next("0 0 9 * JAN-MAR MON#2", "2026-01-01T00:00:00Z")[..3],
            [
                "2026-01-12T09:00:00Z",
                "2026-02-09T09:00:00Z",
                "2026-03-09T09:00:00Z"
            ]
        );
        // Day names, a range of hours and a step.
        assert_eq!(
            next("0 0 8-12/2 * * SAT,SUN", "2026-03-06T23:00:00Z"),
            [
                "2026-03-07T08:00:00Z",
                "2026-03-07T10:00:00Z",
                "2026-03-07T12:00:00Z",
                "2026-03-08T08:00:00Z",
                "2026-03-08T10:00:00Z"
            ]
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
