//! `rerun` and `invoice`: finance checking and correcting closed cycles, one document at a
//! time.

use chrono::NaiveDate;

use billrun::domain::rerun::DocumentNumber;
use billrun::jobs::rerun::{self, RerunError, RerunOptions};
use billrun::store::Store;

use crate::cli::args::{OutputFormat, RerunArgs};
use crate::cli::{Context, EXIT_FAILURE, EXIT_OK, Failure, finance};

use super::known_company;

/// A re-run refused (bad input, exit 2) or failed (exit 1).
fn failure(e: RerunError) -> Failure {
    match e {
        RerunError::Refused(reason) => Failure::Input(reason),
        RerunError::Failed(e) => Failure::Other(e),
    }
}

/// A `YYYY-MM-DD` flag.
fn date_flag(flag: &str, value: Option<&str>) -> Result<NaiveDate, Failure> {
    let value = value.ok_or_else(|| Failure::Input(format!("--{flag} is required")))?;
    billrun::fixture::values::date(value).map_err(|m| Failure::Input(format!("--{flag}: {m}")))
}

/// `rerun`: re-runs one closed boundary of a company, or every closed boundary in a range of
/// dates, and prints what differs.
pub async fn rerun<S: Store>(store: &S, cx: &Context, args: RerunArgs) -> Result<u8, Failure> {
    let at = cx.instant_or_now("as-of", args.as_of.as_deref())?;
    let by = args
        .by
        .or_else(|| cx.user.clone())
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| {
            Failure::Input("--by: who re-runs it? Give --by NAME (USER is not set)".into())
        })?;
    let options = RerunOptions {
        reason: args.reason,
        by,
        dry_run: args.dry_run,
        at,
    };
    let world = store.world().await?;
    if args.all {
        let from = date_flag("from", args.from.as_deref())?;
        let to = match args.to.as_deref() {
            Some(to) => date_flag("to", Some(to))?,
            None => from,
        };
        let results = rerun::rerun_all(store, &world, (from, to), &options, &cx.clock)
            .await
            .map_err(failure)?;
        print!(
            "{}",
            finance::rerun_all_text(&results, |c| world.companies[c].currency.clone())
        );
        return Ok(if results.iter().any(Result::is_err) {
            EXIT_FAILURE
        } else {
            EXIT_OK
        });
    }
    let company = known_company(
        &world.companies,
        args.company.as_deref().unwrap_or_default(),
    )?;
    let boundary = date_flag("boundary", args.boundary.as_deref())?;
    let report = rerun::rerun(store, &world, &company.id, boundary, &options, &cx.clock)
        .await
        .map_err(failure)?;
    print!("{}", finance::rerun_text(&report, company, options.dry_run));
    Ok(EXIT_OK)
}

/// `invoice NUMBER`: one issued document as finance reads it.
pub async fn invoice<S: Store>(
    store: &S,
    number: &str,
    format: OutputFormat,
) -> Result<u8, Failure> {
    let parsed = DocumentNumber::parse(number).ok_or_else(|| {
        Failure::Input(format!(
            "{number:?} is not a document number (<company>-<YYYYMMDD>, or <company>-<YYYYMMDD>-A<n> for an adjustment)"
        ))
    })?;
    let world = store.world().await?;
    let company = world.companies.get(&parsed.company).ok_or_else(|| {
        Failure::Input(format!(
            "no document {number}: unknown company {:?}",
            parsed.company.as_str()
        ))
    })?;
    let issued = store
        .issued_document(&company.id, number)
        .await?
        .ok_or_else(|| Failure::Input(format!("no document {number} was issued")))?;
    print!(
        "{}",
        match format {
            OutputFormat::Text => finance::document_text(&issued, company),
            OutputFormat::Json => finance::document_json(&issued, company),
        }
    );
    Ok(EXIT_OK)
}
