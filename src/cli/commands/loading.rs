//! `load`: a fixture, or a production feed appended to the recorded world, in one transaction.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use sha2::{Digest, Sha256};

use billrun::fixture::events::{self, Origin};
use billrun::fixture::usage::{self, UsageReader};
use billrun::fixture::{LoadError, scenario, text};
use billrun::jobs::intake::{Intake, Taken, USAGE_CHUNK, take_in};
use billrun::store::{LoadedFile, Store};

use crate::cli::{Context, EXIT_OK, EXIT_PARTIAL, Failure};

/// A load is retried once when a concurrent load recorded one of its files first: the second
/// look finds the file loaded.
const ATTEMPTS: usize = 2;

/// A folder with a scenario is validated whole and recorded; a folder with only
/// `events.jsonl` and/or `usage.csv` is a production feed appended to the recorded world.
/// Scenario, events and usage are recorded in one transaction, or nothing is. A file whose
/// exact content was loaded before is skipped, and says so. `usage.csv` is read twice, a row
/// at a time: once to check it (nothing is written if it can't be read throughout) and once
/// to take it in, so memory does not grow with its size.
pub async fn load<S: Store>(store: &S, cx: &Context, dir: &Path) -> Result<u8, Failure> {
    store.migrate().await?;
    for _ in 0..ATTEMPTS {
        if let Some(code) = load_once(store, cx, dir).await? {
            return Ok(code);
        }
    }
    Err(Failure::Other(anyhow::anyhow!(
        "{}: other loads kept recording these files first",
        dir.display()
    )))
}

/// The small files of a folder, read whole and hashed.
struct SmallFile {
    bytes: Vec<u8>,
    file: LoadedFile,
}

/// What a folder holds, checked: `events.jsonl` whole, `scenario.toml` hashed (it is read
/// a part at a time as it is parsed), `usage.csv` by a first pass.
struct Folder {
    scenario: Option<LoadedFile>,
    events: Option<SmallFile>,
    usage: Option<(usage::UsageFile, LoadedFile)>,
}

/// One attempt; `None` when another load recorded one of the files meanwhile.
async fn load_once<S: Store>(store: &S, cx: &Context, dir: &Path) -> Result<Option<u8>, Failure> {
    let mut folder = read_folder(cx, dir)?;
    let files: Vec<&LoadedFile> = folder
        .scenario
        .iter()
        .chain(folder.events.iter().map(|f| &f.file))
        .chain(folder.usage.iter().map(|(_, f)| f))
        .collect();
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
    let is_new = |f: &LoadedFile| !known.iter().any(|k| k.sha256 == f.sha256);
    let new: Vec<LoadedFile> = files
        .iter()
        .filter(|f| is_new(f))
        .map(|f| (*f).clone())
        .collect();
    if new.is_empty() {
        tracing::info!(folder = %dir.display(), "nothing new to load");
        return Ok(Some(EXIT_OK));
    }
    // A scenario of many companies is tens of megabytes: it is read a part at a time.
    let world = match &folder.scenario {
        Some(_) => scenario::parse_file("scenario.toml", &dir.join("scenario.toml"))?,
        None => store.world().await?,
    };
    let origin = if folder.scenario.is_some() {
        Origin::Fixture
    } else {
        Origin::Feed
    };
    let bar = cx.progress_bar("usage rows");
    let events = match &mut folder.events {
        Some(f) if is_new(&f.file) => {
            let bytes = std::mem::take(&mut f.bytes);
            let src = text::decode("events.jsonl", &bytes)?;
            events::parse("events.jsonl", src, &world, origin)?
        }
        _ => Vec::new(),
    };
    let (usage, usage_companies): (Box<dyn Iterator<Item = _> + Send>, _) = match &folder.usage {
        Some((checked, f)) if is_new(f) => {
            let reader = UsageReader::new("usage.csv", BufReader::new(open(dir, "usage.csv")?))?;
            bar.set_length(checked.rows);
            let counted = bar.clone();
            (
                Box::new(read_ahead(reader)?.map(move |row| {
                    counted.inc(1);
                    row.map_err(anyhow::Error::from)
                })),
                checked.companies.clone(),
            )
        }
        _ => (Box::new(std::iter::empty()), BTreeSet::new()),
    };
    let intake = Intake {
        world: &world,
        save_world: folder.scenario.as_ref().is_some_and(is_new),
        events: &events,
        usage,
        usage_companies,
        files: &new,
        usage_chunk: USAGE_CHUNK,
    };
    let taken = take_in(store, intake).await?;
    bar.finish();
    let (taken, usage) = match taken {
        Taken::Recorded { events, usage } => (events, usage),
        Taken::FilesTaken(names) => {
            tracing::info!(files = ?names, "another load recorded these files first");
            return Ok(None);
        }
    };
    perform_reruns(store, cx, &world, &events).await?;
    let events = taken;
    tracing::info!(
        events_accepted = events.accepted,
        events_rejected = events.rejected,
        usage_accepted = usage.accepted,
        usage_rejected = usage.rejected,
        duplicates = events.duplicates + usage.duplicates,
        "loaded"
    );
    let rejected = events.rejected + usage.rejected;
    if rejected > 0 {
        list_rejections(store, rejected, "rejections.csv from `billrun dump`").await?;
    }
    Ok(Some(if rejected > 0 { EXIT_PARTIAL } else { EXIT_OK }))
}

/// How many rejected items a load lists on stderr; `rejections.csv` has them all.
const LISTED: usize = 20;

/// Lists on stderr the first of the `count` items this load rejected (the last recorded),
/// then how many more there are and where to find them all (`all_in`).
pub(super) async fn list_rejections<S: Store>(
    store: &S,
    count: usize,
    all_in: &str,
) -> anyhow::Result<()> {
    let all = store.rejections().await?;
    let mine = &all[all.len().saturating_sub(count)..];
    for r in mine.iter().take(LISTED) {
        let id = if r.id.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.id)
        };
        tracing::warn!("rejected {}:{}{id}: {}", r.source, r.line, r.reason);
    }
    if mine.len() > LISTED {
        tracing::warn!(
            "… and {} more rejected (all in {all_in})",
            mine.len() - LISTED
        );
    }
    Ok(())
}

/// Makes the accepted `rerun` events among `events`, in file order, at their instants: the same
/// path as `billrun rerun`. Each is its own transaction after the load's; a load killed in
/// between leaves the re-run to be made with `billrun rerun`.
async fn perform_reruns<S: Store>(
    store: &S,
    cx: &Context,
    world: &billrun::domain::model::World,
    events: &[billrun::domain::model::Event],
) -> Result<(), Failure> {
    for e in events {
        if matches!(e.kind, billrun::domain::model::EventKind::Rerun { .. }) {
            billrun::jobs::rerun::perform_event(store, world, e, &cx.clock).await?;
        }
    }
    Ok(())
}

/// Rows handed over at a time by [`read_ahead`], and batches it may read ahead.
const READ_AHEAD: (usize, usize) = (4096, 4);

/// Reads and parses `rows` on a thread of its own, a few batches ahead of the intake that
/// judges and writes them, so that both cores work during a load. The thread ends when
/// the rows do or when the intake stops taking them (it fails at the first row it can't use).
fn read_ahead<T: Send + 'static>(
    rows: impl Iterator<Item = T> + Send + 'static,
) -> anyhow::Result<impl Iterator<Item = T> + Send> {
    let (batch, ahead) = READ_AHEAD;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<T>>(ahead);
    std::thread::Builder::new()
        .name("usage-reader".into())
        .spawn(move || {
            let mut rows = rows;
            loop {
                let next: Vec<T> = rows.by_ref().take(batch).collect();
                if next.is_empty() || tx.send(next).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("starting the usage reader: {e}"))?;
    Ok(rx.into_iter().flatten())
}

/// The input files a folder may hold.
const INPUT_FILES: [&str; 3] = ["scenario.toml", "events.jsonl", "usage.csv"];

/// Refuses, before any database is opened (or created), a folder that does not exist or
/// holds no input file.
pub fn check_folder(dir: &Path) -> Result<(), Failure> {
    if !dir.is_dir() {
        return Err(Failure::Input(format!("{}: no such folder", dir.display())));
    }
    if !INPUT_FILES.iter().any(|f| dir.join(f).is_file()) {
        return Err(Failure::Input(format!(
            "{}: no input file ({})",
            dir.display(),
            INPUT_FILES.join(", ")
        )));
    }
    Ok(())
}

/// `None` when `e`, met reading `dir/name`, is that the file does not exist; otherwise the
/// error, naming the file.
fn absent<T>(dir: &Path, name: &str, e: std::io::Error) -> Result<Option<T>, Failure> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Ok(None),
        _ => Err(Failure::Input(format!("{}: {e}", dir.join(name).display()))),
    }
}

/// Opens `dir/name`.
fn open(dir: &Path, name: &str) -> Result<File, LoadError> {
    let path = dir.join(name);
    File::open(&path).map_err(|e| LoadError::new(path.display().to_string(), 0, "", e.to_string()))
}

/// The input files present in `dir`, checked enough that the load can't fail half-way on
/// unreadable input.
fn read_folder(cx: &Context, dir: &Path) -> Result<Folder, Failure> {
    if !dir.is_dir() {
        return Err(Failure::Input(format!("{}: no such folder", dir.display())));
    }
    let loaded = |name: &str, sha256: String| LoadedFile {
        sha256,
        name: name.to_string(),
        loaded_at: cx.now(),
    };
    let events = match std::fs::read(dir.join("events.jsonl")) {
        Ok(bytes) => Some(SmallFile {
            file: loaded("events.jsonl", format!("{:x}", Sha256::digest(&bytes))),
            bytes,
        }),
        Err(e) => absent(dir, "events.jsonl", e)?,
    };
    let hashed = |mut file: File| {
        let mut sha256 = Sha256::new();
        std::io::copy(&mut file, &mut sha256).map(|_| format!("{:x}", sha256.finalize()))
    };
    let scenario = match File::open(dir.join("scenario.toml")).and_then(hashed) {
        Ok(sha256) => Some(loaded("scenario.toml", sha256)),
        Err(e) => absent(dir, "scenario.toml", e)?,
    };
    let usage = if dir.join("usage.csv").exists() {
        let checked = usage::check("usage.csv", BufReader::new(open(dir, "usage.csv")?))?;
        let file = loaded("usage.csv", checked.sha256.clone());
        Some((checked, file))
    } else {
        None
    };
    let folder = Folder {
        scenario,
        events,
        usage,
    };
    if folder.scenario.is_none() && folder.events.is_none() && folder.usage.is_none() {
        return Err(Failure::Input(format!(
            "{}: no input file (scenario.toml, events.jsonl or usage.csv)",
            dir.display()
        )));
    }
    Ok(folder)
}
