//! Fault injection for tests (the kill -9 at every step of spec/redemption.md §3, and a step that
//! takes too long). Never set these variables in production; reading them costs one comparison
//! after the first call.
//!
//! - `LOYALTY_FAULT=<point>`: the process aborts at `<point>`, at once, as if killed; what it
//!   wrote before (synced) survives, nothing after happens.
//! - `LOYALTY_FAULT_DELAY=<point>:<ms>`: the request that reaches `<point>` waits `<ms>`
//!   milliseconds there (at most a minute) before it goes on.

use std::sync::OnceLock;
use std::time::Duration;

/// The variable naming the point to crash at.
pub const FAULT_ENV: &str = "LOYALTY_FAULT";
/// The variable naming a point to pause at, and for how long: `<point>:<ms>`.
pub const FAULT_DELAY_ENV: &str = "LOYALTY_FAULT_DELAY";

/// Aborts the process when `name` is the configured fault point.
pub fn point(name: &str) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var(FAULT_ENV).ok());
    if configured.as_deref() == Some(name) {
        eprintln!("{FAULT_ENV}={name}: crashing here on purpose");
        std::process::abort();
    }
}

/// Waits when `name` is the configured delay point.
pub async fn delay(name: &str) {
    static CONFIGURED: OnceLock<Option<(String, Duration)>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| {
        let v = std::env::var(FAULT_DELAY_ENV).ok()?;
        let (point, ms) = v.rsplit_once(':')?;
        let ms: u64 = ms.parse().ok()?;
        Some((point.to_owned(), Duration::from_millis(ms.min(60_000))))
    });
    if let Some((point, pause)) = configured {
        if point == name {
            tracing::warn!("{FAULT_DELAY_ENV}: pausing {pause:?} at {name} on purpose");
            tokio::time::sleep(*pause).await;
        }
    }
}

/// The variable naming a file whose content (a number of milliseconds) the clock guard adds to
/// its reading of the wall clock while the file exists: a forward jump of the system clock,
/// for tests (the sequencer's clock is not moved).
pub const FAULT_CLOCK_JUMP_FILE_ENV: &str = "LOYALTY_FAULT_CLOCK_JUMP_FILE";

/// The simulated forward jump of the wall clock, in ms (0 unless a test set one).
pub fn clock_jump_ms() -> u64 {
    static CONFIGURED: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let Some(path) =
        CONFIGURED.get_or_init(|| std::env::var_os(FAULT_CLOCK_JUMP_FILE_ENV).map(Into::into))
    else {
        return 0;
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
