//! Fail points: named places where a test can make the process die on the spot, to prove that
//! a crash anywhere leaves exactly what a clean run would after a rerun.
//!
//! The command line arms at most one point (from `BILLRUN_FAILPOINT`); the library only asks
//! whether the place it reached is the armed one.

use std::sync::OnceLock;

static ARMED: OnceLock<String> = OnceLock::new();

/// Arms the fail point `name`.
pub fn arm(name: String) {
    let _ = ARMED.set(name);
}

/// Dies at once, as a crash would, when `name` is the armed fail point.
pub fn hit(name: &str) {
    if ARMED.get().is_some_and(|armed| armed == name) {
        eprintln!("fail point {name} reached: aborting");
        std::process::abort();
    }
}

/// Fails with an error when `name` is the armed fail point (prefixed `error:`), as a step
/// that meets bad data or a lost connection would.
pub fn error(name: &str) -> anyhow::Result<()> {
    match ARMED.get().and_then(|armed| armed.strip_prefix("error:")) {
        Some(point) if point == name => anyhow::bail!("fail point {name} reached"),
        _ => Ok(()),
    }
}
