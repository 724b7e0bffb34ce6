//! A brand's node with a standby (issue 18): two nodes, one leads, the other follows; a fenced
//! commit point in a coordination store (etcd) decides who may sign.
//!
//! - [`lock`]: the coordination store's contract (Sunlight's lock backend, plus a lease);
//!   [`etcd`]: its implementation on etcd.
//! - [`commit`]: the primary's commit gate: replicate, then compare-and-swap, then answer.
//! - [`standby`]: the standby's log, a verified mirror of its own brand's log.
//! - [`guard`]: the restore guard, asked before the first signature after a takeover;
//!   [`refusal`]: a node it refused serves no signed tree head and does not lead again.
//! - [`local`]: node-local records (API keys, pins, witness records, ...) on the standby.
//! - [`wire`]: the binary bodies between the two nodes.
//! - [`follow`]: the standby phase: serve reads, receive and pull batches, watch the leadership.
//! - [`node`]: the role loop: start as a standby, take over when eligible, lead until fenced.
//!
//! Invariants of the whole (spec/protocol.md §7, docs/operator-guide.md "A standby"):
//! - a batch is answered only after it is durable on the primary **and** either durable on the
//!   in-sync standby or the standby was first removed from the in-sync set, and after one
//!   compare-and-swap under the primary's lease recorded the new head;
//! - a request that wrote node-local records is answered only after they are durable on the
//!   in-sync standby, or after the standby was removed from the in-sync set ([`local`]);
//! - only a node listed in sync in the committed head, holding exactly that head (or, when it
//!   was alone in sync, an extension it wrote itself), may take over; so two nodes never sign
//!   different checkpoints of the same size that anybody outside could see.

pub mod commit;
pub mod etcd;
pub mod follow;
pub mod guard;
pub mod local;
pub mod lock;
pub mod node;
pub mod refusal;
pub mod standby;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Where the standby receives batches.
pub const REPLICATE_PATH: &str = "/v1/ha/replicate";
/// Where a node shows its role and the commit point.
pub const STATUS_PATH: &str = "/v1/ha/status";
/// Largest replication request body accepted by a standby.
pub const REPLICATE_BODY_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The exit code of a node that stopped leading (fenced, lease lost, or switched over): its
/// supervisor restarts it, and it comes back as the standby.
pub const EXIT_STEPPED_DOWN: i32 = 3;

/// A batch shipped by the primary to the standby, before the primary commits it. Sent as a
/// binary body ([`ReplicateBody::encode`], spec/api.md "Standby replication"): the entries'
/// canonical bytes travel as they are, not as escaped JSON strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicateBody {
    /// The leadership epoch of the sender (informational: the signed note is what is checked).
    pub epoch: i64,
    /// Index of the first entry.
    pub start: u64,
    /// Canonical entries, in order.
    pub entries: Vec<Vec<u8>>,
    /// The brand's signed checkpoint note of the log ending with these entries.
    pub note: String,
}

/// The first bytes of a replication body (format version 1).
const REPLICATE_MAGIC: &[u8; 4] = b"LHR1";

impl ReplicateBody {
    /// `"LHR1"`, epoch i64, start u64, note, count u32, then each entry (byte strings are a
    /// u32 length and the bytes; integers big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.entries.iter().map(|e| e.len() + 4).sum();
        let mut w = wire::Writer::with_capacity(size + self.note.len() + 32);
        w.raw(REPLICATE_MAGIC);
        w.i64(self.epoch);
        w.u64(self.start);
        w.bytes(self.note.as_bytes());
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            w.bytes(e);
        }
        w.into_inner()
    }

    /// Reads a body (checks nothing but its shape: the standby checks the batch itself).
    pub fn decode(body: &[u8]) -> Result<ReplicateBody, wire::WireError> {
        let mut r = wire::Reader::new(body);
        r.magic(REPLICATE_MAGIC)?;
        let epoch = r.i64()?;
        let start = r.u64()?;
        let note = String::from_utf8(r.bytes()?.to_vec())
            .map_err(|_| wire::WireError::Invalid("the note is not UTF-8".into()))?;
        let n = r.count(4)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(r.bytes()?.to_vec());
        }
        r.end()?;
        Ok(ReplicateBody {
            epoch,
            start,
            entries,
            note,
        })
    }
}

/// Where a standby stands: committed entries held, and the end of the staged batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateAnswer {
    pub size: u64,
    pub staged_end: Option<u64>,
}

#[cfg(test)]
mod tests;
