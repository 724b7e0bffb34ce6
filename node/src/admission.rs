//! The global admission state the request guard ([`crate::guard`]) enforces: one concurrency
//! limit with a bounded wait, and the deadlines and size limit of a request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Why the request guard refuses a request before its route sees it; mapped to statuses and
/// codes in [`crate::problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// Every slot stayed taken for the whole wait.
    #[error("the node is serving as many requests as it allows; retry later")]
    Busy,
    /// The request was not served within its deadline.
    #[error("the request took too long")]
    Timeout,
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("the request body exceeds the limit")]
    BodyTooLarge,
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// A request of a client route without an unrevoked API key.
    #[error("an API key is required: Authorization: Bearer <key>")]
    Unauthenticated,
}

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
