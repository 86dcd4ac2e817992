//! One function per command.

mod closing;
mod exporting;
mod loading;
mod replaying;
mod reports;
mod rerunning;

pub use closing::{run_due, schedule};
pub use exporting::export_usage;
pub use loading::{check_folder, load};
pub use replaying::{gen_fixture, replay};
pub use reports::{dump, plan_usage, status};
pub use rerunning::{invoice, rerun};

use billrun::domain::model::{Companies, Company};
use billrun::store::{Store, redact_url};

use super::{EXIT_OK, Failure};

/// `migrate`: creates or upgrades the schema.
pub async fn migrate<S: Store>(store: &S, url: &str) -> Result<u8, Failure> {
    store.migrate().await?;
    tracing::info!(database = %redact_url(url), "schema is up to date");
    Ok(EXIT_OK)
}

/// The company a `--company` flag names, refused when the database does not know it.
fn known_company<'w>(companies: &'w Companies, company: &str) -> Result<&'w Company, Failure> {
    companies
        .get(company)
        .ok_or_else(|| Failure::Input(format!("--company: unknown company {company:?}")))
}
