//! `replay` and `gen`: fixtures driven under a simulated clock, and synthetic ones.

use std::path::Path;

use anyhow::Context as _;

use billrun::export;
use billrun::fixture::Fixture;
use billrun::mail::MailSettings;
use billrun::replay::replay_with_mail as drive;
use billrun::store::{AnyStore, SqliteStore};
use billrun::synthetic::{GenOptions, generate};
use billrun::with_store;

use crate::cli::args::ReplayArgs;
use crate::cli::{Context, EXIT_OK, EXIT_PARTIAL, EXIT_UNDONE, Failure, parse_instant};

/// `replay`: loads a fixture into a fresh database, walks it through time, writes its files.
pub async fn replay(cx: &Context, args: ReplayArgs) -> Result<u8, Failure> {
    let until = args
        .until
        .as_deref()
        .map(|s| parse_instant("until", s))
        .transpose()?;
    let fx = Fixture::read(&args.fixture)?;
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let store = match &args.into {
        Some(url) => cx.connect(url, billrun::store::Access::Create).await?,
        None => {
            let url = format!("sqlite://{}", tmp.path().join("replay.db").display());
            AnyStore::Sqlite(SqliteStore::connect(&url).await?)
        }
    };
    let out = &args.out;
    let result: Result<u8, Failure> = with_store!(&store, s => {
        // A replay's emails go to OUT/outbox and their CSVs to OUT/exports, whatever the
        // mail settings say: it must never mail anyone.
        let mut mail = MailSettings::outbox(out.join("outbox"));
        mail.exports = Some(out.join("exports"));
        let report = drive(s, &fx, until, Some(&mail), Some(&cx.progress_bar("instants"))).await?;
        export::replay_files::dump(s, out, None, &cx.progress_bar("files")).await?;
        tracing::info!(
            boundaries = report.boundaries,
            accepted = report.events.accepted,
            rejected = report.events.rejected,
            usage_accepted = report.usage.accepted,
            usage_rejected = report.usage.rejected,
            out = %out.display(),
            "replay finished"
        );
        for (company, error) in &report.failed {
            tracing::error!(company = %company, "{error}");
        }
        let rejected = report.events.rejected + report.usage.rejected;
        if rejected > 0 {
            let all_in = out.join("rejections.csv");
            super::loading::list_rejections(s, rejected, &all_in.display().to_string()).await?;
        }
        Ok(if !report.failed.is_empty() {
            EXIT_UNDONE
        } else if rejected > 0 {
            EXIT_PARTIAL
        } else {
            EXIT_OK
        })
    });
    store.close().await;
    result
}

/// `gen`: a synthetic fixture of any size.
pub fn gen_fixture(companies: usize, events: usize, seed: u64, out: &Path) -> Result<u8, Failure> {
    generate(
        GenOptions {
            companies,
            events,
            seed,
        },
        out,
    )?;
    tracing::info!(companies, events, out = %out.display(), "fixture written");
    Ok(EXIT_OK)
}
