//! The global admission state the request guard ([`crate::guard`]) enforces: one concurrency
//! limit with a bounded wait, and the deadlines and size limit of a request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// The global admission state, shared by every route.
pub struct Admission {
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) queue_wait: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) body_bytes_max: usize,
}

impl Admission {
    /// Admission under the configured limits.
    pub fn new(limits: &crate::config::Limits) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limits.concurrency_max)),
            queue_wait: Duration::from_millis(limits.queue_wait_ms),
            body_timeout: Duration::from_millis(limits.body_timeout_ms),
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
            body_bytes_max: limits.body_bytes_max,
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self, concurrency_max: usize) -> usize {
        concurrency_max.saturating_sub(self.slots.available_permits())
    }
}
