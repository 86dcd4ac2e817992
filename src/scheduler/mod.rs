//! The daemon: a UTC wake-up that runs due work.
//!
//! tokio-cron-scheduler only rings the bell: a fire means "wake up and run what is due", and
//! the work itself runs here, one run at a time, so the daemon never overlaps itself (fires
//! during a run collapse into one more run after it). Missed fires while down don't matter:
//! the next run catches up every due boundary. On shutdown the daemon takes no new work and
//! lets the running one finish within a grace period; a run cut off then loses only its open
//! transaction, which rolls back.
//!
//! Under systemd (`Type=notify`) the daemon reports to the service manager: `READY=1` once the
//! wake-up is registered, `STOPPING=1` when asked to stop, and `WATCHDOG=1` at half the
//! watchdog interval from a task of its own, so a long run keeps the watchdog fed. Outside
//! systemd (`NOTIFY_SOCKET` unset) these reports are no-ops.

mod config;

pub use config::{ConfigError, ScheduleConfig, check_cron, parse_config, wakeups};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

/// Runs `run_once` at start and at every fire of `config.cron` until `shutdown` is cancelled,
/// never two at once. Returns once the running work finished or the grace period ran out.
pub async fn run<F, Fut>(
    config: &ScheduleConfig,
    shutdown: CancellationToken,
    mut run_once: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let bell = Arc::new(Notify::new());
    let mut scheduler = JobScheduler::new().await?;
    let ring = bell.clone();
    let job = Job::new_async(config.cron.as_str(), move |_, _| {
        let ring = ring.clone();
        Box::pin(async move { ring.notify_one() })
    })
    .map_err(|e| anyhow::anyhow!("scheduling {:?}: {e}", config.cron))?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    tracing::info!(cron = %config.cron, "scheduler started");

    // The watchdog pings run beside the work, not between runs: a close may take longer than
    // the watchdog interval. They stop when this function returns.
    let done = CancellationToken::new();
    let _stop_pings = done.clone().drop_guard();
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracing::info!(
            watchdog_s = interval.as_secs_f64(),
            "feeding the systemd watchdog"
        );
        tokio::spawn(ping_watchdog(interval / 2, done));
    }
    report(&[NotifyState::Ready]);
    let stopping = || report(&[NotifyState::Stopping, NotifyState::Status("stopping")]);

    // Run at start, then once per wake-up; fires during a run leave one wake-up pending.
    loop {
        {
            report(&[NotifyState::Status("running due work")]);
            let work = run_once();
            tokio::pin!(work);
            tokio::select! {
                result = &mut work => {
                    if let Err(e) = result {
                        tracing::error!("run failed: {e:#}");
                    }
                }
                _ = shutdown.cancelled() => {
                    stopping();
                    tracing::info!(grace_s = config.grace.as_secs(), "stopping: letting the running work finish");
                    match tokio::time::timeout(config.grace, &mut work).await {
                        Ok(Err(e)) => tracing::error!("run failed: {e:#}"),
                        Ok(Ok(())) => {}
                        Err(_) => tracing::warn!("grace period over: abandoning the running work (its open transaction rolls back)"),
                    }
                    break;
                }
            }
        }
        report(&[NotifyState::Status("waiting for a wake-up")]);
        tokio::select! {
            _ = bell.notified() => {}
            _ = shutdown.cancelled() => {
                stopping();
                break;
            }
        }
    }
    scheduler.shutdown().await?;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Tells the service manager about a state change; a no-op when not started by systemd. A
/// report that cannot be sent is logged and the daemon goes on.
fn report(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Sends `WATCHDOG=1` every `every` until `done` is cancelled.
async fn ping_watchdog(every: Duration, done: CancellationToken) {
    // Never a zero period (tokio refuses it); a watchdog of under 2 µs is a misconfiguration.
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => report(&[NotifyState::Watchdog]),
            _ = done.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_start_and_on_fires_never_overlapping_then_stops() {
        let config = ScheduleConfig {
            cron: "* * * * * *".into(),
            grace: Duration::from_secs(5),
            lease: Duration::from_secs(60),
        };
        let shutdown = CancellationToken::new();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = shutdown.clone();
        let (r, busy) = (runs.clone(), running.clone());
        let daemon = tokio::spawn(async move {
            run(&config, stop, move || {
                let (r, busy) = (r.clone(), busy.clone());
                async move {
                    assert!(
                        !busy.swap(true, std::sync::atomic::Ordering::SeqCst),
                        "runs overlapped"
                    );
                    // Longer than a fire interval: fires during it must not start a second run.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    busy.store(false, std::sync::atomic::Ordering::SeqCst);
                    r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(3500)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), daemon)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let n = runs.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=4).contains(&n), "{n} runs");
    }
}
