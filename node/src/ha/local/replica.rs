//! The standby's side of the node-local records' stream: it checks and applies each body in
//! one synced write with its position.

use loyalty_wire::ErrorCode;

use super::*;

/// Why a body was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// It does not continue the standby's copy (the answer says where the copy stands).
    #[error("the body does not continue this standby's copy")]
    Position,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The standby's copy of the leader's node-local records.
pub struct LocalReplica {
    store: Store,
    key: VerifyingKey,
    position: Mutex<Option<LocalPosition>>,
    /// Called after a body that wrote API key records (the standby's key cache reloads).
    keys_changed: Option<Box<dyn Fn() + Send + Sync>>,
}

impl LocalReplica {
    pub fn open(store: Store, key: VerifyingKey) -> Result<LocalReplica, StoreError> {
        let position = store
            .local_get(POSITION_KEY)?
            .and_then(|v| serde_json::from_slice(&v).ok());
        Ok(LocalReplica {
            store,
            key,
            position: Mutex::new(position),
            keys_changed: None,
        })
    }

    /// Calls `f` after every body that wrote API key records.
    pub fn on_keys_changed(mut self, f: impl Fn() + Send + Sync + 'static) -> LocalReplica {
        self.keys_changed = Some(Box::new(f));
        self
    }

    fn touches_keys<'a>(&self, mut keys: impl Iterator<Item = &'a [u8]>) -> bool {
        keys.any(|k| k.starts_with(API_KEY_PREFIX))
    }

    pub fn position(&self) -> Option<LocalPosition> {
        *self.position.lock().expect("position lock")
    }

    /// Checks and applies one body durably; the position after it.
    pub fn apply(&self, body: &[u8]) -> Result<Option<LocalPosition>, ApplyError> {
        let body = LocalBody::decode(body, &self.key)?;
        let keys = match &body {
            LocalBody::Ops { writes, .. } => {
                self.touches_keys(writes.iter().flatten().map(|(k, _)| k.as_slice()))
            }
            // A page may delete keys it does not hold: reload after every page.
            LocalBody::Page { .. } => true,
        };
        let applied = self.apply_body(body)?;
        if keys {
            if let Some(f) = &self.keys_changed {
                f();
            }
        }
        Ok(applied)
    }

    fn apply_body(&self, body: LocalBody) -> Result<Option<LocalPosition>, ApplyError> {
        let mut pos = self.position.lock().expect("position lock");
        let new = match body {
            LocalBody::Ops { gen, from, writes } => {
                let Some(p) = *pos else {
                    return Err(ApplyError::Position);
                };
                let end = from + writes.len() as u64;
                if p.gen != gen || !p.complete || from > p.next || end < p.next {
                    return Err(ApplyError::Position);
                }
                let new = LocalPosition {
                    gen,
                    next: end,
                    complete: true,
                };
                let mut all: Ops = writes
                    .into_iter()
                    .skip((p.next - from) as usize)
                    .flatten()
                    .filter(|(k, _)| replicated(k))
                    .collect();
                all.push(position_record(&new));
                self.store.local_write_unobserved(&all)?;
                new
            }
            LocalBody::Page {
                gen,
                start,
                from,
                to,
                records,
            } => {
                // A copy begins with its first page (an empty `from`), never behind this
                // standby's position in the same generation; later pages continue it.
                let fresh = from.is_empty()
                    && pos.is_none_or(|p| gen > p.gen || (gen == p.gen && start >= p.next));
                let continues = pos.is_some_and(|p| {
                    p.gen == gen && p.next == start && !p.complete && !from.is_empty()
                });
                if !fresh && !continues {
                    return Err(ApplyError::Position);
                }
                if fresh {
                    // The copy is incomplete until its last page.
                    let begun = LocalPosition {
                        gen,
                        next: start,
                        complete: false,
                    };
                    self.store
                        .local_write_unobserved(&[position_record(&begun)])?;
                    *pos = Some(begun);
                }
                self.delete_missing(&from, to.as_deref(), &records)?;
                let new = LocalPosition {
                    gen,
                    next: start,
                    complete: to.is_none(),
                };
                let mut all: Ops = records
                    .into_iter()
                    .filter(|(k, _)| replicated(k))
                    .map(|(k, v)| (k, Some(v)))
                    .collect();
                all.push(position_record(&new));
                self.store.local_write_unobserved(&all)?;
                new
            }
        };
        *pos = Some(new);
        Ok(Some(new))
    }

    /// Deletes the replicated records in `[from, to)` that `keep` does not hold.
    fn delete_missing(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        keep: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let keep: BTreeMap<&[u8], ()> = keep.iter().map(|(k, _)| (k.as_slice(), ())).collect();
        let mut cursor = from.to_vec();
        loop {
            let page = self.store.local_scan_from(b"", &cursor, PAGE_RECORDS_MAX)?;
            let mut deletes = Vec::new();
            let mut done = page.len() < PAGE_RECORDS_MAX;
            for (k, _) in &page {
                if to.is_some_and(|t| k.as_slice() >= t) {
                    done = true;
                    break;
                }
                if replicated(k) && !keep.contains_key(k.as_slice()) {
                    deletes.push((k.clone(), None));
                }
            }
            if !deletes.is_empty() {
                self.store.local_write_unobserved(&deletes)?;
            }
            match page.last() {
                Some((k, _)) if !done => {
                    cursor = k.clone();
                    cursor.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
}

fn position_record(p: &LocalPosition) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        POSITION_KEY.to_vec(),
        Some(serde_json::to_vec(p).expect("a position serializes")),
    )
}

/// `GET /v1/ha/local` on the standby: its position (`null`: it holds no copy).
pub async fn position(State(replica): State<Arc<LocalReplica>>) -> Response {
    axum::Json(replica.position()).into_response()
}

/// `POST /v1/ha/local` on the standby.
pub async fn receive(
    State(replica): State<Arc<LocalReplica>>,
    body: axum::body::Bytes,
) -> Response {
    let r = {
        let replica = replica.clone();
        tokio::task::spawn_blocking(move || replica.apply(&body)).await
    };
    match r {
        Ok(Ok(p)) => axum::Json(p).into_response(),
        Ok(Err(ApplyError::Position)) => {
            (StatusCode::CONFLICT, axum::Json(replica.position())).into_response()
        }
        Ok(Err(ApplyError::Wire(e))) => {
            tracing::warn!(error = %e, "a node-local records body was refused");
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                e.to_string(),
            )
            .into_response()
        }
        Ok(Err(e)) => ApiError::internal(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
