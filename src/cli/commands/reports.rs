//! `status`, `plan-usage` and `dump`: reading the database as it stands.

use std::path::Path;

use billrun::export;
use billrun::jobs;
use billrun::store::Store;

use crate::cli::args::{OutputFormat, StatusArgs};
use crate::cli::{Context, EXIT_OK, EXIT_UNDONE, Failure, render};

use super::known_company;

/// `status`: closed and pending boundaries, leases, parked companies, rejected items and the
/// email queue, of every company or of `--company` only. Exit 4 when a company is parked, or
/// with `--check` overdue by more than `--max-lag`.
pub async fn status<S: Store>(store: &S, cx: &Context, args: StatusArgs) -> Result<u8, Failure> {
    let as_of = cx.instant_or_now("as-of", args.as_of.as_deref())?;
    let lag = chrono::Duration::from_std(args.max_lag)
        .map_err(|_| Failure::Input("--max-lag: too long".into()))?;
    let directory = store.companies().await?;
    let company = match &args.company {
        Some(c) => Some(known_company(&directory, c)?.id.clone()),
        None => None,
    };
    let rows = jobs::status::status(store, &directory, as_of, company.as_ref()).await?;
    let rejections = store
        .rejections()
        .await?
        .iter()
        .filter(|r| company.is_none() || r.company == company)
        .count();
    let (sent, emails) = store.email_backlog(company.as_ref()).await?;
    match args.format {
        OutputFormat::Text => {
            print!("{}", render::status_text(&rows, rejections));
            print!("{}", render::email_queue_text(sent, &emails));
        }
        OutputFormat::Json => print!(
            "{}",
            render::status_json(&rows, rejections, (sent, &emails), as_of, lag)
        ),
    }
    let mut undone = false;
    for r in &rows {
        if !r.parked.is_empty() {
            undone = true;
            if args.check {
                tracing::error!(company = %r.company, "parked");
            }
        }
        if args.check
            && let Some(b) = r.overdue(as_of, lag)
        {
            undone = true;
            tracing::error!(
                company = %r.company,
                boundary = %b.date,
                due_at = %b.at.to_rfc3339(),
                max_lag = %humantime::format_duration(args.max_lag),
                "overdue: a boundary has waited longer than the lag"
            );
        }
    }
    Ok(if undone { EXIT_UNDONE } else { EXIT_OK })
}

/// `plan-usage`: each wallet's committed, spent and available credits, with the usage
/// accepted since the last close priced in.
pub async fn plan_usage<S: Store>(
    store: &S,
    cx: &Context,
    company: &str,
    office: Option<String>,
    as_of: Option<String>,
) -> Result<u8, Failure> {
    let as_of = cx.instant_or_now("as-of", as_of.as_deref())?;
    let world = store.world().await?;
    let company = known_company(&world.companies, company)?;
    let office = match &office {
        Some(o) => Some(
            world
                .offices_of(&company.id)
                .find(|x| x.id == o.as_str())
                .map(|x| x.id.clone())
                .ok_or_else(|| {
                    Failure::Input(format!("--office: unknown office {o:?} of {}", company.id))
                })?,
        ),
        None => None,
    };
    let view = jobs::plan_usage(store, &world, company, office.as_ref(), as_of).await?;
    print!(
        "{}",
        render::plan_usage_table(&view.rows, &company.currency)
    );
    print!("{}", render::plan_usage_notes(&view, &company.currency));
    Ok(EXIT_OK)
}

/// `dump`: the files of a replay, from the database as it stands.
pub async fn dump<S: Store>(
    store: &S,
    cx: &Context,
    out: &Path,
    company: Option<String>,
) -> Result<u8, Failure> {
    let company = match &company {
        Some(c) => Some(known_company(&store.companies().await?, c)?.id.clone()),
        None => None,
    };
    let bar = cx.progress_bar("files");
    export::replay_files::dump(store, out, company.as_ref(), &bar).await?;
    Ok(EXIT_OK)
}
