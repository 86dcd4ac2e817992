//! Fail points: named places where a test can make the process die on the spot, fail, or
//! panic, to prove that a crash anywhere leaves exactly what a clean run would after a rerun.
//!
//! The command line arms at most one point (from `BILLRUN_FAILPOINT`); the library only asks
//! whether the place it reached is the armed one. Release builds compile the checks away:
//! arming does nothing there, so no environment variable can make production crash.

use std::sync::OnceLock;

static ARMED: OnceLock<String> = OnceLock::new();

/// Arms the fail point `name` (debug builds only).
pub fn arm(name: String) {
    if cfg!(debug_assertions) {
        let _ = ARMED.set(name);
    }
}

fn armed() -> Option<&'static str> {
    if cfg!(debug_assertions) {
        ARMED.get().map(String::as_str)
    } else {
        None
    }
}

/// Dies at once, as a crash would, when `name` is the armed fail point.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        eprintln!("fail point {name} reached: aborting");
        std::process::abort();
    }
}

/// Fails with an error when `name` is armed with the prefix `error:`, as a step that meets
/// bad data or a lost connection would; panics when it is armed with the prefix `panic:`.
pub fn error(name: &str) -> anyhow::Result<()> {
    match armed() {
        Some(a) if a.strip_prefix("error:") == Some(name) => {
            anyhow::bail!("fail point {name} reached")
        }
        Some(a) if a.strip_prefix("panic:") == Some(name) => {
            panic!("fail point {name} reached")
        }
        _ => Ok(()),
    }
}
