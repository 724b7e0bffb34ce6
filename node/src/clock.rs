//! The clock guard (issue 13, item 11): log time follows the system clock, and an entry's time
//! is final, so a forward jump of the clock would move log time ahead for good (expiring lots
//! and holds early). The guard compares the wall clock with a monotonic clock; a forward jump
//! larger than `limits.clock_jump_ms_max` stops writes until an operator confirms the time.
//!
//! Invariants: while held, the node is not ready (`/readyz` 503), refuses every write route
//! with `503 clock_jump` (except the confirmation itself), reports `loyalty_clock_jump_held 1`,
//! and has logged the jump at error level; only an operator's confirmation
//! (`loyalty-node clock confirm`, or `POST /v1/admin/clock/confirm`) lifts it. Backward steps
//! are not the guard's business: log time never goes back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use loyalty_wire::ErrorCode;

use crate::metrics::Metrics;
use crate::problem::ApiError;

/// How often the guard reads the clocks.
pub const CLOCK_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// The operator's route that lifts a hold.
pub const CONFIRM_PATH: &str = "/v1/admin/clock/confirm";

/// The guard's state, shared by the checking task, the routes and the admission middleware.
pub struct ClockGuard {
    bound_ms: u64,
    /// Shared with the sequencer, whose housekeeping (expiries, releases, tier changes, all
    /// judged by log time) pauses while it is set.
    held: Arc<AtomicBool>,
    jump_ms: AtomicU64,
    /// The wall clock (ms) and the monotonic clock read at the same moment.
    base: Mutex<(u64, Instant)>,
    metrics: Arc<Metrics>,
}

/// What the guard reports.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClockStatus {
    /// Whether writes are stopped by a clock jump.
    pub held: bool,
    /// The forward jump found last, in ms.
    pub jump_ms: u64,
    /// The largest forward jump tolerated (`limits.clock_jump_ms_max`).
    pub bound_ms: u64,
    /// The wall clock now, ms since the epoch.
    pub now_ms: u64,
}

/// The wall clock as the guard reads it (with a test's simulated jump, see `node::fault`).
fn wall_ms() -> u64 {
    crate::sequencer::now()
        .get()
        .saturating_add(crate::fault::clock_jump_ms())
}

impl ClockGuard {
    /// A guard tolerating forward jumps up to `bound_ms`.
    pub fn new(bound_ms: u64, metrics: Arc<Metrics>) -> Arc<ClockGuard> {
        Arc::new(ClockGuard {
            bound_ms,
            held: Arc::new(AtomicBool::new(false)),
            jump_ms: AtomicU64::new(0),
            base: Mutex::new((wall_ms(), Instant::now())),
            metrics,
        })
    }

    /// The flag that is set while writes are stopped, for the sequencer's housekeeping.
    pub fn held_flag(&self) -> Arc<AtomicBool> {
        self.held.clone()
    }

    /// Whether writes are stopped.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// One reading: holds on a jump past the bound; otherwise follows the wall clock.
    pub fn check(&self) {
        let wall = wall_ms();
        let mut base = self.base.lock().expect("clock lock");
        let expected = base.0.saturating_add(base.1.elapsed().as_millis() as u64);
        let ahead = wall.saturating_sub(expected);
        if ahead > self.bound_ms {
            if !self.held.swap(true, Ordering::AcqRel) {
                self.jump_ms.store(ahead, Ordering::Release);
                self.metrics.clock_jump_ms.set(ahead as i64);
                self.metrics.clock_jump_held.set(1);
                tracing::error!(
                    jump_ms = ahead,
                    bound_ms = self.bound_ms,
                    "the system clock jumped forward; writes are stopped until an operator checks the time and runs `loyalty-node clock confirm`"
                );
            }
        } else if !self.is_held() {
            // Small steps and drift are followed, so they never add up to a jump.
            *base = (wall, Instant::now());
        }
    }

    /// The operator confirms the clock: writes resume at the current wall time.
    pub fn confirm(&self) -> ClockStatus {
        *self.base.lock().expect("clock lock") = (wall_ms(), Instant::now());
        if self.held.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                jump_ms = self.jump_ms.load(Ordering::Acquire),
                "clock confirmed by an operator; writes resume"
            );
        }
        self.metrics.clock_jump_held.set(0);
        self.status()
    }

    /// The guard's state now.
    pub fn status(&self) -> ClockStatus {
        ClockStatus {
            held: self.is_held(),
            jump_ms: self.jump_ms.load(Ordering::Acquire),
            bound_ms: self.bound_ms,
            now_ms: wall_ms(),
        }
    }

    /// The answer to a write while held.
    pub fn refusal() -> ApiError {
        ApiError {
            retry_after_s: Some(60),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ClockJump,
                "the system clock jumped forward; writes are stopped until an operator confirms the time",
            )
        }
    }
}

/// Reads the clocks every [`CLOCK_CHECK_INTERVAL`] for as long as the process runs.
pub fn spawn(guard: Arc<ClockGuard>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CLOCK_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            guard.check();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_past_the_bound_holds_until_confirmed() {
        let g = ClockGuard::new(1_000, Arc::new(Metrics::new()));
        g.check();
        assert!(!g.is_held());
        // The base moved back by 10 s is the same as the wall clock moving 10 s ahead.
        g.base.lock().unwrap().0 -= 10_000;
        g.check();
        assert!(g.is_held());
        assert!(g.status().jump_ms >= 9_000);
        g.check();
        assert!(g.is_held(), "only an operator lifts it");
        assert!(!g.confirm().held);
        g.check();
        assert!(!g.is_held());
    }
}
