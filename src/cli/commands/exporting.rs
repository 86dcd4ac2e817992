//! `export-usage`: the usage history of a grid period, as the scope rule allows.

use std::str::FromStr;

use rust_decimal::Decimal;

use billrun::domain::usage_history::{
    ExportScope, HistoryFilter, HistoryQuery, Selection, export_file_name, month_period,
    parse_month,
};
use billrun::domain::words::{Service, Wallet};
use billrun::export::usage_csv::export_usage_history;
use billrun::store::Store;

use crate::cli::args::ExportArgs;
use crate::cli::{Context, EXIT_OK, Failure};

use super::known_company;

/// `export-usage`: streams the rows of the period to the file, oldest first.
pub async fn export_usage<S: Store>(
    store: &S,
    cx: &Context,
    args: ExportArgs,
) -> Result<u8, Failure> {
    let input = |flag: &str, m: String| Failure::Input(format!("--{flag}: {m}"));
    // This company's master data only: an export holds nothing of the others.
    let world = store.world_of(Some(&[args.company.clone().into()])).await?;
    let company = known_company(&world.companies, &args.company)?;
    let grid = company.grid();
    let office = match &args.office {
        Some(o) => Some(
            world
                .offices_of(&company.id)
                .find(|x| x.id == o.as_str())
                .map(|x| x.id.clone())
                .ok_or_else(|| {
                    input("office", format!("unknown office {o:?} of {}", company.id))
                })?,
        ),
        None => None,
    };
    let viewer = match &args.admin {
        Some(email) => Some(
            world
                .admins
                .iter()
                .find(|a| a.company == company.id && a.email.eq_ignore_ascii_case(email))
                .map(|a| a.role.clone())
                .ok_or_else(|| input("admin", format!("no admin {email:?} of {}", company.id)))?,
        ),
        None => None,
    };
    let scope = ExportScope::resolve(viewer.as_ref(), office.as_ref()).map_err(|m| {
        input(
            if args.office.is_some() {
                "office"
            } else {
                "admin"
            },
            m,
        )
    })?;
    let (year, month) = parse_month(&args.month).map_err(|m| input("month", m))?;
    let k = month_period(&grid, year, month).ok_or_else(|| {
        input(
            "month",
            format!("{} is before the anchor {}", args.month, company.anchor),
        )
    })?;
    if let Some(user) = &args.user
        && !world.parties_of(&company.id).any(|p| p.id == *user)
    {
        return Err(input(
            "user",
            format!("unknown user or group {user:?} of {}", company.id),
        ));
    }
    let amount = |flag: &str, v: &Option<String>| -> Result<Option<Decimal>, Failure> {
        v.as_deref()
            .map(|s| {
                Decimal::from_str(s).map_err(|_| input(flag, format!("{s:?} is not an amount")))
            })
            .transpose()
    };
    let filter = HistoryFilter {
        party: args.user.clone(),
        service: args
            .service
            .as_deref()
            .map(Service::from_str)
            .transpose()
            .map_err(|m| input("service", m))?,
        wallet: args
            .wallet
            .as_deref()
            .map(Wallet::from_str)
            .transpose()
            .map_err(|m| input("wallet", m))?,
        min_cost: amount("min-amount", &args.min_amount)?,
        max_cost: amount("max-amount", &args.max_amount)?,
    };
    let query = HistoryQuery {
        company: company.id.clone(),
        scope,
        selection: Selection::OccurredIn {
            from: grid.boundary_at(k),
            until: grid.boundary_at(k + 1),
        },
        filter,
    };
    let path = args
        .out
        .unwrap_or_else(|| export_file_name(grid.local_date(cx.now())).into());
    let bar = crate::cli::output::progress_counter(cx.terminal, "rows");
    let rows = export_usage_history(store, company, &query, &path, &bar).await?;
    tracing::info!(
        rows,
        scope = query.scope.as_str(),
        period_start = %grid.boundary_date(k),
        file = %path.display(),
        "usage history written"
    );
    Ok(EXIT_OK)
}
