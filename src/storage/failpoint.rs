//! Failpoints: a test hook that stops a node's process at a chosen point of a storage
//! operation, so that a test can SIGKILL it exactly there (`tests/crash_points.rs`).
//!
//! A node started with the environment variable `ROLEPAX_FAILPOINT=<name>` blocks the
//! thread that reaches [`hit`]`(<name>)` for ever (the rest of the process runs on), after
//! writing a marker file `failpoint-<name>` (holding the process id) into the directory
//! `ROLEPAX_FAILPOINT_DIR` (if set; the test waits for it) and logging at error level.
//! Without the variable [`hit`] costs one check of a value read once.
//!
//! | name                 | where                                                                  |
//! |----------------------|------------------------------------------------------------------------|
//! | `snapshot-write`     | this node's snapshot, written and synced aside, before the rename over `snapshot.bin` |
//! | `snapshot-install`   | a snapshot received from a peer, synced, before the rename over `snapshot.bin` |
//! | `snapshot-installed` | the same, renamed, before the directory is synced                      |
//! | `compaction`         | just before the acceptor log or the decided log is compacted (a durable snapshot covers what goes) |
//! | `compacted`          | just after either log was compacted                                     |
//! | `truncating`         | inside a log's truncation, after its first segment was deleted and before the others |
//!
//! Not a way to inject errors: nothing here makes an operation fail, a node only stops
//! where a power cut or a kill could stop it anyway.

use std::sync::OnceLock;
use std::time::Duration;

/// The variable naming the failpoint to stop at.
pub const ENV: &str = "ROLEPAX_FAILPOINT";
/// The variable naming the directory for the marker files.
pub const DIR_ENV: &str = "ROLEPAX_FAILPOINT_DIR";

/// The failpoint this process stops at, if any (read from the environment once).
fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|n| !n.is_empty()))
        .as_deref()
}

/// If this process was started with `ROLEPAX_FAILPOINT=<name>`: says so (marker file,
/// error log) and blocks the calling thread until the process is killed. Otherwise
/// returns at once.
pub fn hit(name: &'static str) {
    if armed() != Some(name) {
        return;
    }
    tracing::error!(
        failpoint = name,
        "failpoint reached ({ENV} is set, a test hook): this thread stops here until the process is killed"
    );
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        let marker = std::path::Path::new(&dir).join(format!("failpoint-{name}"));
        if let Err(e) = std::fs::write(&marker, std::process::id().to_string()) {
            tracing::error!(failpoint = name, marker = %marker.display(), error = %e, "cannot write the failpoint's marker file");
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
