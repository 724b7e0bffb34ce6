//! What a node does once the restore guard ([`super::guard`]) refused to let it sign: it stops
//! serving its signed tree heads at once (`/checkpoint`, the checkpoint list, the cosigned
//! checkpoint, receipts answer `503 restore_refused`), in this phase and, when it holds less
//! than a partner saw, in every later start (the refusal is a durable node-local record), and
//! it does not take the leadership again. It serves them again once it holds the log the
//! partner saw (as the standby of the node that has it).
//!
//! Invariants:
//! - from the moment the guard refused, no signed tree head of this node's older log is
//!   served, so a partner never reads one (no `shrink` evidence against the brand after it);
//! - a refusal for a partner's larger log is durable before the node steps down, and is
//!   cleared only when the node holds at least that many entries.

use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use ledger_store::store::{Store, StoreError};

use loyalty_wire::ErrorCode;

use crate::problem::ApiError;

/// The node-local record of a refusal (not replicated: `ha/`).
const REFUSED_KEY: &[u8] = b"ha/guard-refused";

/// Why the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Entries a partner saw of this log (`0`: the refusal was for too few answers).
    pub known: u64,
    /// Entries this node held then.
    pub held: u64,
    /// What the guard said (and what to do).
    pub detail: String,
}

/// The refusal in force, shared by the routes' layer and the role loop.
pub struct Refused {
    store: Store,
    current: RwLock<Option<Refusal>>,
}

impl Refused {
    /// The refusal recorded in `store`, if any.
    pub fn load(store: Store) -> Result<Arc<Refused>, StoreError> {
        let current = store
            .local_get(REFUSED_KEY)?
            .and_then(|v| serde_json::from_slice(&v).ok());
        Ok(Arc::new(Refused {
            store,
            current: RwLock::new(current),
        }))
    }

    /// Records a refusal: durably when a partner saw more than this node holds (it stays
    /// true after a restart), else only for this process.
    pub fn refuse(&self, r: Refusal) -> Result<(), StoreError> {
        // In force at once for this process, whatever the store says.
        *self.current.write().expect("refusal lock") = Some(r.clone());
        if r.known > r.held {
            let bytes = serde_json::to_vec(&r).expect("a refusal serializes");
            self.store
                .local_write_unobserved(&[(REFUSED_KEY.to_vec(), Some(bytes))])?;
        }
        Ok(())
    }

    /// The refusal in force for a node holding `size` entries; one whose partner's log this
    /// node now holds is cleared.
    pub fn active(&self, size: u64) -> Option<Refusal> {
        let r = self.current.read().expect("refusal lock").clone()?;
        if r.known > 0 && size >= r.known {
            if self
                .store
                .local_write_unobserved(&[(REFUSED_KEY.to_vec(), None)])
                .is_ok()
            {
                tracing::info!(size, known = r.known, "this node now holds the log its partners saw; the restore guard's refusal is cleared");
                *self.current.write().expect("refusal lock") = None;
            }
            return None;
        }
        Some(r)
    }
}

/// Whether `path` serves a signed tree head of this node's log.
pub fn serves_signed_head(path: &str) -> bool {
    matches!(
        path,
        "/checkpoint" | "/v1/log/checkpoints" | "/v1/checkpoint/cosigned"
    ) || (path.starts_with("/v1/log/entries/") && path.ends_with("/receipt"))
}

/// What the routes' layer reads: the refusal, and the size of the log this node holds.
pub struct Gate {
    pub refused: Arc<Refused>,
    pub size: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The routes' layer: a signed tree head is not served while a refusal is in force.
pub async fn gate(State(refused): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if serves_signed_head(req.uri().path()) {
        if let Some(r) = refused.refused.active((refused.size)()) {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RestoreRefused,
                format!(
                    "the restore guard refused to let this node sign, and it serves no signed tree head: {}",
                    r.detail
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_hides_the_signed_heads_until_the_node_holds_what_the_partner_saw() {
        assert!(serves_signed_head("/checkpoint"));
        assert!(serves_signed_head("/v1/log/entries/7/receipt"));
        assert!(!serves_signed_head("/v1/log/entries"));
        assert!(!serves_signed_head("/tile/0/000"));

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let refused = Refused::load(store.clone()).unwrap();
        assert_eq!(refused.active(3), None);
        let r = Refusal {
            known: 10,
            held: 3,
            detail: "partner coffee cosigned size 10".into(),
        };
        refused.refuse(r.clone()).unwrap();
        assert_eq!(refused.active(3), Some(r.clone()));
        // Durable: a restarted node still refuses.
        drop(refused);
        let refused = Refused::load(store.clone()).unwrap();
        assert_eq!(refused.active(9), Some(r));
        // Holding the partner's log clears it, durably.
        assert_eq!(refused.active(10), None);
        let refused = Refused::load(store.clone()).unwrap();
        assert_eq!(refused.active(3), None);

        // Too few answers: refused for this process only.
        let q = Refusal {
            known: 0,
            held: 3,
            detail: "only 0 partners' witnesses answered".into(),
        };
        refused.refuse(q.clone()).unwrap();
        assert_eq!(refused.active(3), Some(q));
        assert_eq!(Refused::load(store).unwrap().active(3), None);
    }
}
