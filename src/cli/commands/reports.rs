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
    let world = store.world().await?;
    let company = match &company {
        Some(c) => Some(known_company(&world, c)?.id.clone()),
        None => None,
    };
    let rows = jobs::status::status(store, &world, as_of, company.as_ref()).await?;
    let rejections = store.rejections().await?.len();
    print!("{}", render::status_text(&rows, rejections));
    let (sent, pending) = store.email_backlog(company.as_ref()).await?;
    print!("{}", render::email_queue_text(sent, &pending));
    Ok(if rows.iter().any(|r| !r.parked.is_empty()) {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
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
    let company = known_company(&world, company)?;
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
pub async fn dump<S: Store>(store: &S, out: &Path, company: Option<String>) -> Result<u8, Failure> {
    let company = match &company {
        Some(c) => Some(known_company(&store.world().await?, c)?.id.clone()),
        None => None,
    };
    export::replay_files::dump(store, out, company.as_ref()).await?;
    Ok(EXIT_OK)
}
