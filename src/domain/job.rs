//! What `job_runs` records of each piece of work: which job it was (a step of a close, or a
//! finance re-run) and how it ended.

use std::fmt;
use std::str::FromStr;

use super::close::Step;

/// A piece of work recorded in `job_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// A step of the close of a boundary: once per (company, boundary).
    Step(Step),
    /// A re-run of a closed boundary by finance: as often as finance asks.
    Rerun,
}

impl Job {
    /// The name used in files: the step's name, or `rerun`.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Step(step) => step.as_str(),
            Job::Rerun => "rerun",
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Job {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "rerun" {
            Ok(Job::Rerun)
        } else {
            s.parse()
                .map(Job::Step)
                .map_err(|_| format!("unknown job {s:?}"))
        }
    }
}

/// How a recorded job ended. A failure is not a status: failed steps are recorded apart, and
/// nothing of them is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobStatus {
    /// A step of a close, done.
    Ok,
    /// A re-run that found a difference and issued an adjustment.
    Adjusted,
    /// A re-run that found the boundary's documents right as issued.
    Identical,
}

impl JobStatus {
    const ALL: [JobStatus; 3] = [JobStatus::Ok, JobStatus::Adjusted, JobStatus::Identical];

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Ok => "ok",
            JobStatus::Adjusted => "adjusted",
            JobStatus::Identical => "identical",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        JobStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown job status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_statuses_read_back_what_they_write() {
        for job in Step::ALL.map(Job::Step).into_iter().chain([Job::Rerun]) {
            assert_eq!(job.as_str().parse::<Job>(), Ok(job));
        }
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!("reruns".parse::<Job>().is_err());
        assert!("failed".parse::<JobStatus>().is_err());
    }
}
