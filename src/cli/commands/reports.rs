//! `status`, `plan-usage` and `dump`: reading the database as it stands.

use std::path::Path;

use billrun::export;
use billrun::jobs;
use billrun::store::Store;

use crate::cli::{Context, EXIT_OK, EXIT_PARTIAL, Failure, render};

use super::known_company;

/// `status`: closed and pending boundaries, parked companies.
pub async fn status<S: Store>(
    store: &S,
    cx: &Context,
    company: Option<String>,
    as_of: Option<String>,
) -> Result<u8, Failure> {
    let as_of = cx.instant_or_now("as-of", as_of.as_deref())?;
    store.migrate().await?;
    let world = store.world().await?;
    let company = match &company {
        Some(c) => Some(known_company(&world, c)?.id.clone()),
        None => None,
    };
    let rows = jobs::status::status(store, &world, as_of, company.as_ref()).await?;
    let rejections = store.rejections().await?.len();
    print!("{}", render::status_text(&rows, rejections));
    Ok(if rows.iter().any(|r| !r.parked.is_empty()) {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}

/// `plan-usage`: each wallet's committed, spent and available credits.
pub async fn plan_usage<S: Store>(
    store: &S,
    cx: &Context,
    company: &str,
    as_of: Option<String>,
) -> Result<u8, Failure> {
    let as_of = cx.instant_or_now("as-of", as_of.as_deref())?;
    let world = store.world().await?;
    let company = known_company(&world, company)?;
    let rows = jobs::plan_usage(store, &world, company, as_of).await?;
    print!("{}", render::plan_usage_table(&rows, &company.currency));
    Ok(EXIT_OK)
}

/// `dump`: the files of a replay, from the database as it stands.
pub async fn dump<S: Store>(store: &S, out: &Path, company: Option<String>) -> Result<u8, Failure> {
    let company = match &company {
        Some(c) => Some(known_company(&store.world().await?, c)?.id.clone()),
        None => None,
    };
    export::replay_files::dump(store, out, company.as_ref()).await?;
    Ok(EXIT_OK)
}
