//! Node-local records on a standby: what the node keeps beside its log (API keys, partner
//! pins, agreement approvals, witness and cosignature records, evidence, redemption secrets,
//! tier progress, ...; every record of the store's `local` family outside
//! [`NOT_REPLICATED`]) reaches the standby before the request that wrote it is answered.
//!
//! Why a second stream beside the log's batches, and not the coordination store: these records
//! grow with traffic (a secret per redemption, a record per cosigned checkpoint) and include
//! secrets (API key digests, redemption secrets); etcd is sized for a few small coordination
//! records and its quota is shared by every brand's commit point, so the records travel the
//! same way as the batches, primary to standby, and etcd only decides who is in sync.
//!
//! The stream: every node-local write on the leader is journaled in memory ([`Journal`], a
//! [`LocalObserver`] of the store) with a sequence number of the leadership's generation
//! (its lease epoch); a shipper thread sends the journal to the standby
//! (`POST /v1/ha/local`, ops from the standby's position), which applies each body in one
//! synced write with its new position. A standby whose position is of another generation,
//! unknown, or older than the journal holds is re-synchronised: the leader sends every
//! replicated record in key-ordered pages (the standby deletes, in each page's key range,
//! what the page does not hold), then the journal from the sequence at which the copy began;
//! each record's last write wins, so the copy converges to the leader's records.
//!
//! Every body is signed with a key derived from the brand's node key (both nodes hold it),
//! so that nobody else can write records into a standby.
//!
//! Invariants:
//! - a request that wrote a node-local record is answered only once the standby holds every
//!   record journaled up to the request's end ([`LocalLink::released`]), or after the standby
//!   was removed from the in-sync set in the coordination store (then the records are
//!   released as the leader holds them alone);
//! - the standby is listed in sync only while its stream position is of this generation,
//!   complete, and holds every released record ([`LocalLink::standby_may_be_in_sync`]); so a
//!   node that takes over holds every acknowledged record;
//! - the journal holds at most [`JOURNAL_BYTES_MAX`] bytes and [`JOURNAL_WRITES_MAX`] writes;
//!   a standby that falls further behind is re-synchronised.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ledger_store::store::{LocalObserver, Store, StoreError};

use super::commit::Fence;
use super::wire::{Reader, WireError, Writer};
use crate::problem::ApiError;

/// Where the standby receives node-local records (and answers its position to a GET).
pub const LOCAL_PATH: &str = "/v1/ha/local";
/// Prefixes of node-local records that stay on their node: the standby's own replication
/// state (`ha/`) and a mirror's progress (`mirror/`).
pub const NOT_REPLICATED: [&[u8]; 2] = [b"ha/", b"mirror/"];
/// Most bytes of node-local writes the leader keeps for its standby.
pub const JOURNAL_BYTES_MAX: usize = 64 << 20;
/// Most node-local writes the leader keeps for its standby.
pub const JOURNAL_WRITES_MAX: usize = 100_000;
/// Most bytes of records one body carries (a page of the copy, or journaled writes).
pub const BODY_RECORD_BYTES_MAX: usize = 4 << 20;
/// Most records one page of the copy carries.
pub const PAGE_RECORDS_MAX: usize = 1_000;
/// Largest body the standby accepts on [`LOCAL_PATH`].
pub const LOCAL_BODY_BYTES_MAX: usize = 2 * BODY_RECORD_BYTES_MAX + (1 << 20);
/// The standby's position record.
const POSITION_KEY: &[u8] = b"ha/local-position";
/// The prefix of API key records.
const API_KEY_PREFIX: &[u8] = crate::keys::PREFIX;
/// The first bytes of every body (format version 1).
const MAGIC: &[u8; 4] = b"LHL1";
const KIND_OPS: u8 = 1;
const KIND_PAGE: u8 = 2;
/// How often the shipper retries a standby that did not answer.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// One write: records put (`Some`) or deleted (`None`).
pub type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Whether a node-local record travels to the standby.
pub fn replicated(key: &[u8]) -> bool {
    !NOT_REPLICATED.iter().any(|p| key.starts_with(p))
}

fn ops_bytes(ops: &Ops) -> usize {
    ops.iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 16)
        .sum()
}

/// Where a standby's copy of the node-local records stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPosition {
    /// The leadership generation (lease epoch) whose journal it follows.
    pub gen: i64,
    /// Every journaled write before this sequence number is held (once `complete`).
    pub next: u64,
    /// Whether the copy is complete (`false`: a re-synchronisation is under way).
    pub complete: bool,
}

/// The key both nodes derive from the node key to sign and check replication bodies.
pub fn body_key(seed: &[u8; 32]) -> SigningKey {
    let mut h = Sha256::new();
    h.update(b"loyalty ha node-local records v1\0");
    h.update(seed);
    SigningKey::from_bytes(&h.finalize().into())
}

/// A body from the leader to the standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalBody {
    /// Journaled writes `from`, `from + 1`, ... of generation `gen`.
    Ops {
        gen: i64,
        from: u64,
        writes: Vec<Ops>,
    },
    /// The replicated records with keys in `[from, to)` (`to: None`: to the end) of a copy
    /// that began at journal sequence `start` of generation `gen`.
    Page {
        gen: i64,
        start: u64,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl LocalBody {
    /// The signed body.
    pub fn encode(&self, key: &SigningKey) -> Vec<u8> {
        let mut w = Writer::with_capacity(4096);
        w.raw(MAGIC);
        match self {
            LocalBody::Ops { gen, from, writes } => {
                w.u8(KIND_OPS);
                w.i64(*gen);
                w.u64(*from);
                w.u32(writes.len() as u32);
                for ops in writes {
                    w.u32(ops.len() as u32);
                    for (k, v) in ops {
                        w.bytes(k);
                        match v {
                            Some(v) => {
                                w.u8(1);
                                w.bytes(v);
                            }
                            None => w.u8(0),
                        }
                    }
                }
            }
            LocalBody::Page {
                gen,
                start,
                from,
                to,
                records,
            } => {
                w.u8(KIND_PAGE);
                w.i64(*gen);
                w.u64(*start);
                w.bytes(from);
                match to {
                    Some(t) => {
                        w.u8(1);
                        w.bytes(t);
                    }
                    None => w.u8(0),
                }
                w.u32(records.len() as u32);
                for (k, v) in records {
                    w.bytes(k);
                    w.bytes(v);
                }
            }
        }
        let mut body = w.into_inner();
        let sig = key.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        body
    }

    /// Checks the signature and reads the body.
    pub fn decode(body: &[u8], key: &VerifyingKey) -> Result<LocalBody, WireError> {
        if body.len() < 64 {
            return Err(WireError::Short);
        }
        let (signed, sig) = body.split_at(body.len() - 64);
        let sig = Signature::from_slice(sig).map_err(|e| WireError::Invalid(e.to_string()))?;
        key.verify(signed, &sig).map_err(|_| {
            WireError::Invalid("the body is not signed by this brand's node key".into())
        })?;
        let mut r = Reader::new(signed);
        r.magic(MAGIC)?;
        let body = match r.u8()? {
            KIND_OPS => {
                let gen = r.i64()?;
                let from = r.u64()?;
                let n = r.count(4)?;
                let mut writes = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = r.count(5)?;
                    let mut ops = Vec::with_capacity(m);
                    for _ in 0..m {
                        let k = r.bytes()?.to_vec();
                        let v = match r.u8()? {
                            0 => None,
                            1 => Some(r.bytes()?.to_vec()),
                            t => return Err(WireError::Invalid(format!("op tag {t}"))),
                        };
                        ops.push((k, v));
                    }
                    writes.push(ops);
                }
                LocalBody::Ops { gen, from, writes }
            }
            KIND_PAGE => {
                let gen = r.i64()?;
                let start = r.u64()?;
                let from = r.bytes()?.to_vec();
                let to = match r.u8()? {
                    0 => None,
                    1 => Some(r.bytes()?.to_vec()),
                    t => return Err(WireError::Invalid(format!("bound tag {t}"))),
                };
                let n = r.count(8)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = r.bytes()?.to_vec();
                    let v = r.bytes()?.to_vec();
                    records.push((k, v));
                }
                LocalBody::Page {
                    gen,
                    start,
                    from,
                    to,
                    records,
                }
            }
            k => return Err(WireError::Invalid(format!("body kind {k}"))),
        };
        r.end()?;
        Ok(body)
    }
}

mod leader;
mod replica;

pub use leader::{hold_until_replicated, Journal, LocalLink, LocalStatus, ShipState, Shipper};
pub use replica::{position, receive, ApplyError, LocalReplica};
