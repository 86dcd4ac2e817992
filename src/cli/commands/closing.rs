//! `run-due` and `schedule`: closing what is due, once or on a schedule.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use billrun::jobs::{self, DueOptions, DueReport, LeaseConfig};
use billrun::mail::{DeliveryReport, MailSettings, Sender, deliver_due};
use billrun::store::Store;

use crate::cli::args::{RunDueArgs, ScheduleArgs};
use crate::cli::metrics::{self, RunMetrics};
use chrono::{DateTime, Utc};

use billrun::domain::model::Companies;
use billrun::domain::words::CompanyId;

use crate::cli::{Context, EXIT_OK, EXIT_UNDONE, Failure, on_store};

use super::known_company;

/// This process's lease settings.
fn lease(cx: &Context, seconds: u64) -> LeaseConfig {
    LeaseConfig {
        owner: cx.lease_owner.clone(),
        ttl: chrono::Duration::try_seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
            .unwrap_or(chrono::Duration::MAX),
        holder_gone: cx.holder_gone.clone(),
    }
}

/// `run-due`: does all work due as of `--as-of` (default now) and sends the usage emails due
/// by the wall clock, those its closes queue included.
pub async fn run_due<S: Store>(
    store: &S,
    cx: &Context,
    url: &str,
    args: RunDueArgs,
    mail: &MailSettings,
) -> Result<u8, Failure> {
    let started = std::time::Instant::now();
    let as_of = cx.instant_or_now("as-of", args.as_of.as_deref())?;
    let directory = store.companies().await?;
    log_companies(url, &directory);
    let companies = match &args.company {
        Some(c) => Some(BTreeSet::from([known_company(&directory, c)?.id.clone()])),
        None => None,
    };
    let options = DueOptions {
        companies,
        only: args.job,
        last_boundary: None,
        lease: Some(lease(cx, args.lease_seconds)),
        progress: Some(cx.progress_bar("companies")),
    };
    let report = close_and_deliver(store, &directory, cx, mail, args.lease_seconds, async {
        jobs::run_due(store, &directory, as_of, &options, &cx.clock).await
    })
    .await?;
    let code = report_due(store, &report, started, cx.now()).await?;
    if let Some(path) = &args.metrics_file {
        write_metrics(store, &directory, cx, path, &report, code, started).await?;
    }
    Ok(code)
}

/// Says which database a run reads and how many companies it saw: none is a warning, since
/// a run that bills nobody is more often a wrong database than a quiet day.
fn log_companies(url: &str, directory: &Companies) {
    let database = billrun::store::redact_url(url);
    match directory.len() {
        0 => tracing::warn!(database = %database, "no companies in the database: nothing to bill"),
        n => tracing::info!(database = %database, companies = n, "companies read"),
    }
}

/// Runs `close` (a run of due work) and, beside it, sends the queued usage emails due now
/// (wall clock: retries wait real time) round after round: those its commits queue are sent
/// while the next companies are closed, so that the attachments' reads and the closes share
/// the cores and the database. A last round follows a close that succeeded; after one that
/// failed, none: what its commits queued and no round sent yet waits for the next run.
async fn close_and_deliver<S: Store>(
    store: &S,
    directory: &Companies,
    cx: &Context,
    mail: &MailSettings,
    claim_seconds: u64,
    close: impl Future<Output = anyhow::Result<DueReport>>,
) -> anyhow::Result<DueReport> {
    let sender = Sender {
        owner: cx.lease_owner.clone(),
        claim: lease(cx, claim_seconds).ttl,
    };
    // 0 while the close runs, 1 once it succeeded, 2 once it failed.
    let ended = AtomicU8::new(0);
    let woken = Notify::new();
    let closing = async {
        let result = close.await;
        ended.store(if result.is_ok() { 1 } else { 2 }, Ordering::SeqCst);
        woken.notify_one();
        result
    };
    let sending = async {
        let mut total = DeliveryReport::default();
        loop {
            let state = ended.load(Ordering::SeqCst);
            if state == 2 {
                break;
            }
            let round = deliver_due(store, directory, mail, &sender, cx.now()).await?;
            let idle = round == DeliveryReport::default();
            total += round;
            if state == 1 {
                break;
            }
            if idle {
                tokio::select! {
                    () = woken.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
        anyhow::Ok(total)
    };
    let (report, sent) = tokio::join!(closing, sending);
    let report = report?;
    let sent = sent?;
    if sent != DeliveryReport::default() {
        tracing::info!(
            sent = sent.sent,
            retrying = sent.retrying,
            failed = sent.failed,
            "usage emails delivered"
        );
    }
    Ok(report)
}

/// `schedule`: the daemon; with `--check`, the schedule's next wake-ups.
pub async fn schedule(
    cx: &Context,
    url: &str,
    args: ScheduleArgs,
    mail: &MailSettings,
) -> Result<u8, Failure> {
    let config = &args.config;
    let src = std::fs::read_to_string(config)
        .map_err(|e| Failure::Input(format!("{}: {e}", config.display())))?;
    let schedule = billrun::scheduler::parse_config(&config.display().to_string(), &src)?;
    if args.check {
        let from = cx.instant_or_now("from", args.from.as_deref())?;
        let wakeups = billrun::scheduler::wakeups(&schedule.cron, from, 5)
            .map_err(|m| Failure::Input(format!("{}: cron: {m}", config.display())))?;
        for t in wakeups {
            println!("{}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        return Ok(EXIT_OK);
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let lease = lease(cx, schedule.lease.as_secs());
    let metrics_file = args.metrics_file.as_deref();
    on_store!(cx, url, billrun::store::Access::Write, s => {
        billrun::scheduler::run(&schedule, shutdown, || {
            let lease = lease.clone();
            async move {
                let started = std::time::Instant::now();
                let directory = s.companies().await?;
                log_companies(url, &directory);
                let options = DueOptions { lease: Some(lease), ..Default::default() };
                let report = close_and_deliver(s, &directory, cx, mail, schedule.lease.as_secs(), async {
                    jobs::run_due(s, &directory, cx.now(), &options, &cx.clock).await
                })
                .await?;
                let code = report_due(s, &report, started, cx.now()).await?;
                if let Some(path) = metrics_file {
                    write_metrics(s, &directory, cx, path, &report, code, started).await?;
                }
                Ok(())
            }
        })
        .await?;
        Ok(EXIT_OK)
    })
}

/// Writes the run's Prometheus textfile: what it closed and parked, how long it took, and,
/// read after it, the oldest boundary still pending and the email queue.
async fn write_metrics<S: Store>(
    store: &S,
    directory: &Companies,
    cx: &Context,
    path: &Path,
    report: &DueReport,
    code: u8,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let now = cx.now();
    let status = jobs::status::status(store, directory, now, None).await?;
    let oldest_pending_age = status
        .iter()
        .filter_map(|c| c.pending.first())
        .map(|b| (now - b.at).num_milliseconds() as f64 / 1000.0)
        .fold(0.0, f64::max);
    let (_, unsent) = store.email_backlog(None).await?;
    let companies_closed: BTreeSet<&CompanyId> = report.closed.iter().map(|(c, _)| c).collect();
    let metrics = RunMetrics {
        finished_at: now,
        success: code == EXIT_OK,
        companies_closed: companies_closed.len(),
        boundaries_closed: report.closed.len(),
        parked: report.failed.len(),
        oldest_pending_age,
        email_queue: unsent
            .iter()
            .filter(|e| e.status == billrun::store::EmailStatus::Queued)
            .count(),
        duration: started.elapsed().as_secs_f64(),
    };
    metrics::write(path, &metrics)
}

/// Companies named in one log line: the first few, then how many more.
fn some_of(companies: &[CompanyId]) -> String {
    const SHOWN: usize = 10;
    let mut out: Vec<String> = companies
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect();
    if companies.len() > SHOWN {
        out.push(format!("… and {} more", companies.len() - SHOWN));
    }
    out.join(", ")
}

/// Logs what a run did and picks the exit status: [`EXIT_UNDONE`] when a company was parked,
/// or is held under a lease that ran out (its holder stopped renewing it but could not be
/// proved gone).
async fn report_due<S: Store>(
    store: &S,
    report: &DueReport,
    started: std::time::Instant,
    now: DateTime<Utc>,
) -> anyhow::Result<u8> {
    tracing::info!(
        boundaries = report.closed.len(),
        steps = report.steps,
        parked = report.failed.len(),
        busy = report.busy.len(),
        duration_s = started.elapsed().as_secs_f64(),
        "run-due finished"
    );
    let mut stale = Vec::new();
    if !report.busy.is_empty() {
        tracing::info!(
            companies = report.busy.len(),
            "held by another instance and left to it: {}",
            some_of(&report.busy)
        );
        for lease in store.lease_holders(&report.busy).await? {
            // A lease given back is not held: its holder finished.
            if lease.held() && lease.until < now {
                tracing::error!(
                    company = %lease.company,
                    holder = %lease.owner,
                    lease_until = %lease.until.to_rfc3339(),
                    "held under a lease that ran out: work left undone"
                );
                stale.push(lease.company);
            }
        }
    }
    for (company, error) in &report.failed {
        tracing::error!(company = %company, "parked: {error}");
    }
    Ok(if report.failed.is_empty() && stale.is_empty() {
        EXIT_OK
    } else {
        EXIT_UNDONE
    })
}

/// Cancels `token` on SIGTERM or SIGINT.
fn spawn_signal_handler(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}
