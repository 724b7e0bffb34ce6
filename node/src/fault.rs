//! Crash injection for tests (the kill -9 at every step of spec/redemption.md §3): when the
//! environment variable `LOYALTY_FAULT` names a point, the process aborts there, at once, as if
//! killed; what it wrote before (synced) survives, nothing after happens. Never set it in
//! production. Reading it costs one comparison after the first call.

use std::sync::OnceLock;

/// The variable naming the point to crash at.
pub const FAULT_ENV: &str = "LOYALTY_FAULT";

/// Aborts the process when `name` is the configured fault point.
pub fn point(name: &str) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var(FAULT_ENV).ok());
    if configured.as_deref() == Some(name) {
        eprintln!("{FAULT_ENV}={name}: crashing here on purpose");
        std::process::abort();
    }
}
