//! A resumable audit's store on disk (feature `disk`): the replayed state's records in a
//! RocksDB store of the auditor's, with the [`AuditPoint`] beside them, written together.
//!
//! Invariant: the state records and the point are written in one synced batch, so the point
//! always describes exactly the entries the stored state was replayed from; a run that stops
//! at any moment leaves the last flushed pair, from which the next run resumes.

use std::path::Path;

use ledger_store::store::{CommitBatch, Store, StoreConfig};

use super::{AuditPoint, ReplayStore, FLUSH_EVERY_DEFAULT};

/// The local record holding the audit's point.
const POINT_KEY: &[u8] = b"audit/point";

/// The memory an audit's store may use: RocksDB's block cache and memtables.
pub const AUDIT_STORE_CONFIG: StoreConfig = StoreConfig {
    block_cache_bytes: 256 << 20,
    memtable_bytes: 128 << 20,
    shared_memtables: None,
    record_cache_bytes: 64 << 20,
    max_open_files: 256,
};

/// Why an audit's directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// RocksDB refused (another process holds the directory, a corrupt store, ...).
    #[error("the audit store: {0}")]
    Store(#[from] ledger_store::store::StoreError),
    /// The records do not form a state.
    #[error("the audit store's state: {0}")]
    State(String),
    /// The saved point does not decode, or does not describe the stored state.
    #[error("the audit store: {0}")]
    Point(String),
}

/// Opens (creating if missing) the audit store in `dir`: a [`ReplayStore`] whose state is
/// the one saved there and whose `resume` is the point saved with it (`None` when new).
pub fn open(dir: &Path) -> Result<ReplayStore, DiskError> {
    let store = Store::open_with(dir, AUDIT_STORE_CONFIG)?;
    let point = match store.local_get(POINT_KEY)? {
        Some(bytes) => {
            Some(AuditPoint::from_bytes(&bytes).map_err(|e| DiskError::Point(e.to_string()))?)
        }
        None => None,
    };
    let state = store
        .open_state()
        .map_err(|e| DiskError::State(e.to_string()))?;
    let size = point.as_ref().map_or(0, |p| p.size);
    if state.size() != size {
        return Err(DiskError::Point(format!(
            "the state holds {} entries but the saved point {size}",
            state.size()
        )));
    }
    let closing = store.clone();
    Ok(ReplayStore {
        state,
        flush: Box::new(move |changes, point| {
            let batch = CommitBatch {
                state: changes.into(),
                local: vec![(POINT_KEY.to_vec(), point.to_bytes())],
                ..CommitBatch::default()
            };
            store.commit(&batch).map_err(|e| e.to_string())
        }),
        flush_every: FLUSH_EVERY_DEFAULT,
        resume: point,
        close: Some(Box::new(move || closing.flush().map_err(|e| e.to_string()))),
    })
}
