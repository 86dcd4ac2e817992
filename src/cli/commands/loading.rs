//! `load`: a fixture, or a production feed appended to the recorded world, in one transaction.

use std::path::Path;

use sha2::{Digest, Sha256};

use billrun::fixture::Fixture;
use billrun::jobs::intake::{Intake, Taken, take_in};
use billrun::store::{LoadedFile, Store};

use crate::cli::{Context, EXIT_OK, EXIT_PARTIAL, Failure};

/// The files `load` reads from a folder, in the order they are taken in.
const INPUTS: [&str; 3] = ["scenario.toml", "events.jsonl", "usage.csv"];

/// A folder with a scenario is validated whole and recorded; a folder with only
/// `events.jsonl` and/or `usage.csv` is a production feed appended to the recorded world.
/// Scenario, events and usage are recorded in one transaction, or nothing is. A file whose
/// exact content was loaded before is skipped, and says so.
pub async fn load<S: Store>(store: &S, cx: &Context, dir: &Path) -> Result<u8, Failure> {
    store.migrate().await?;
    // A load that lost a race for its files to a concurrent load of the same files finds
    // them recorded on its second look.
    for _ in 0..2 {
        if let Some(code) = load_once(store, cx, dir).await? {
            return Ok(code);
        }
    }
    Err(Failure::Other(anyhow::anyhow!(
        "{}: other loads kept recording these files first",
        dir.display()
    )))
}

/// One attempt; `None` when another load recorded one of the files meanwhile.
async fn load_once<S: Store>(store: &S, cx: &Context, dir: &Path) -> Result<Option<u8>, Failure> {
    let files = input_files(cx, dir)?;
    let hashes: Vec<String> = files.iter().map(|f| f.sha256.clone()).collect();
    let known = store.loaded_files(&hashes).await?;
    for f in &known {
        tracing::info!(
            file = %f.name,
            sha256 = %f.sha256,
            loaded_at = %f.loaded_at.to_rfc3339(),
            "this exact content was loaded before: skipped"
        );
    }
    let new: Vec<LoadedFile> = files
        .into_iter()
        .filter(|f| !known.iter().any(|k| k.sha256 == f.sha256))
        .collect();
    if new.is_empty() {
        tracing::info!(folder = %dir.display(), "nothing new to load");
        return Ok(Some(EXIT_OK));
    }
    let is_new = |name: &str| new.iter().any(|f| f.name == name);
    let with_scenario = dir.join("scenario.toml").exists();
    let fx = if with_scenario {
        Fixture::read(dir)?
    } else {
        Fixture::read_feed(dir, store.world().await?)?
    };
    let intake = Intake {
        world: &fx.world,
        save_world: is_new("scenario.toml"),
        events: if is_new("events.jsonl") {
            &fx.events
        } else {
            &[]
        },
        usage: if is_new("usage.csv") { &fx.usage } else { &[] },
        files: &new,
    };
    let (events, usage) = match take_in(store, &intake).await? {
        Taken::Recorded { events, usage } => (events, usage),
        Taken::FilesTaken(names) => {
            tracing::info!(files = ?names, "another load recorded these files first");
            return Ok(None);
        }
    };
    tracing::info!(
        events_accepted = events.accepted,
        events_rejected = events.rejected,
        usage_accepted = usage.accepted,
        usage_rejected = usage.rejected,
        duplicates = events.duplicates + usage.duplicates,
        "loaded"
    );
    Ok(Some(if events.rejected + usage.rejected > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    }))
}

/// The input files present in `dir`, with the SHA-256 of their content.
fn input_files(cx: &Context, dir: &Path) -> Result<Vec<LoadedFile>, Failure> {
    if !dir.is_dir() {
        return Err(Failure::Input(format!("{}: no such folder", dir.display())));
    }
    let mut files = Vec::new();
    for name in INPUTS {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => files.push(LoadedFile {
                sha256: format!("{:x}", Sha256::digest(&bytes)),
                name: name.to_string(),
                loaded_at: cx.now(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::Input(format!("{}: {e}", path.display()))),
        }
    }
    if files.is_empty() {
        return Err(Failure::Input(format!(
            "{}: no input file (scenario.toml, events.jsonl or usage.csv)",
            dir.display()
        )));
    }
    Ok(files)
}
