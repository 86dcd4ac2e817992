//! `load`: a fixture, or a production feed appended to the recorded world.

use std::collections::BTreeMap;
use std::path::Path;

use billrun::fixture::Fixture;
use billrun::jobs::intake::{take_in_events, take_in_usage};
use billrun::store::Store;

use crate::cli::{EXIT_OK, EXIT_PARTIAL, Failure};

/// A folder with a scenario is validated whole and recorded; a folder with only
/// `events.jsonl` and/or `usage.csv` is a production feed appended to the recorded world.
pub async fn load<S: Store>(store: &S, dir: &Path) -> Result<u8, Failure> {
    store.migrate().await?;
    let with_scenario = dir.join("scenario.toml").exists();
    let fx = if with_scenario {
        Fixture::read(dir)?
    } else {
        Fixture::read_feed(dir, store.world().await?, &BTreeMap::new())?
    };
    if with_scenario {
        store.save_world(&fx.world).await?;
    }
    let events = take_in_events(store, &fx.world, &fx.events).await?;
    let usage = take_in_usage(store, &fx.world, &fx.usage).await?;
    tracing::info!(
        events_accepted = events.accepted,
        events_rejected = events.rejected,
        usage_accepted = usage.accepted,
        usage_rejected = usage.rejected,
        duplicates = events.duplicates + usage.duplicates,
        "loaded"
    );
    Ok(if events.rejected + usage.rejected > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}
