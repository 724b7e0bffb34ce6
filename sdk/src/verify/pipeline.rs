//! The verifier's pipeline: entry bundles fetched ahead with bounded concurrency, checked on
//! a pool of worker threads (framing, leaf hash, strict decode), and delivered in log order to
//! the one task that replays them; and the node's checkpoint list fetched ahead, each
//! signature verified on the same pool.
//!
//! Invariants: at most [`BUNDLES_IN_FLIGHT`] bundles are being fetched or checked and at most
//! [`CHECKED_QUEUE`] checked bundles wait for the replay, so memory is bounded whatever the
//! size of the log; results come out in the order of the log whatever order the fetches and
//! checks finish in; nothing here judges the log beyond one bundle or one note (the replay
//! does, with the tree and the state).
//!
//! The pool is [`workpool::Pool`] (plain `std` threads fed by a channel), re-exported here.

use futures_util::stream::{self, StreamExt};
use ledger::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, NoteVerifier};
use ledger::entry::{Entry, EntryError};
use ledger::merkle::{leaf_hash, Hash};
use ledger::tiles::bundle_entries;
use tokio::sync::mpsc as amp;

use crate::client::Client;
use crate::error::Error;
use crate::types::{CheckpointItem, PAGE_LIMIT_MAX};

/// Entries per C2SP entry bundle.
pub const BUNDLE_ENTRIES: u64 = 256;
/// Bundles fetched or checked at once.
pub const BUNDLES_IN_FLIGHT: usize = 16;
/// Checked bundles waiting for the replay.
pub const CHECKED_QUEUE: usize = 8;
/// Pages of the checkpoint list fetched ahead of the replay.
const CHECKPOINT_PAGES_AHEAD: usize = 2;

pub use workpool::Pool;

/// One entry bundle (or the part of it the run needs), checked.
#[derive(Debug)]
pub struct CheckedBundle {
    /// The index of the first entry.
    pub start: u64,
    /// The leaf hash of every entry served.
    pub leaves: Vec<Hash>,
    /// Every entry served, decoded strictly (canonical form checked), with its intent digest
    /// (its id record's, computed here so that the replay thread does not).
    pub entries: Vec<Result<(Entry, Hash), EntryError>>,
    /// Whether the bundle held fewer entries than asked (or a malformed frame); the first
    /// missing index is `start + leaves.len()`.
    pub short: bool,
}

/// Parses and checks entry bundle `bundle` (C2SP framing: a 2-byte big-endian length, then
/// the bytes), which should hold `width` entries; keeps those from index `from` on.
pub fn check_bundle(bundle: u64, width: u64, from: u64, body: &[u8]) -> CheckedBundle {
    let first = bundle * BUNDLE_ENTRIES;
    let skip = from.saturating_sub(first) as usize;
    let mut out = CheckedBundle {
        start: first + skip as u64,
        leaves: Vec::with_capacity(width as usize - skip.min(width as usize)),
        entries: Vec::with_capacity(width as usize - skip.min(width as usize)),
        short: false,
    };
    let mut frames = bundle_entries(body);
    let mut k = 0usize;
    while (k as u64) < width {
        let Some(Ok(bytes)) = frames.next() else {
            out.short = true;
            return out;
        };
        if k >= skip {
            out.leaves.push(leaf_hash(bytes));
            out.entries.push(Entry::from_bytes_with_intent(bytes));
        }
        k += 1;
    }
    // Trailing bytes mean the framing is not the one the node promised.
    out.short = !frames.remainder().is_empty();
    out
}

/// The checked entries `from..size`, in order, bundle by bundle; fetching and checking run
/// ahead of the caller in a task of their own until it is dropped.
pub struct EntryStream {
    rx: amp::Receiver<Result<CheckedBundle, BundleError>>,
    task: tokio::task::JoinHandle<()>,
}

/// A bundle that could not be fetched.
#[derive(Debug)]
pub struct BundleError {
    /// The first index of the run that the bundle holds.
    pub first: u64,
    /// Why.
    pub error: Error,
}

impl EntryStream {
    /// Starts fetching entries `from..size` of the tree of `size` leaves.
    pub fn start(client: Client, pool: Pool, from: u64, size: u64) -> EntryStream {
        let (tx, rx) = amp::channel(CHECKED_QUEUE);
        let task = tokio::spawn(async move {
            if from >= size {
                return;
            }
            let bundles = (from / BUNDLE_ENTRIES)..=((size - 1) / BUNDLE_ENTRIES);
            let mut checked = stream::iter(bundles)
                .map(|b| {
                    let (client, pool) = (client.clone(), pool.clone());
                    async move {
                        let width = (size - b * BUNDLE_ENTRIES).min(BUNDLE_ENTRIES);
                        let partial = (width < BUNDLE_ENTRIES).then_some(width as u8);
                        let first = (b * BUNDLE_ENTRIES).max(from);
                        let body = client
                            .entry_bundle(b, partial)
                            .await
                            .map_err(|error| BundleError { first, error })?;
                        Ok(pool.run(move || check_bundle(b, width, from, &body)).await)
                    }
                })
                .buffered(BUNDLES_IN_FLIGHT);
            while let Some(r) = checked.next().await {
                let stop = r.is_err();
                if tx.send(r).await.is_err() || stop {
                    return;
                }
            }
        });
        EntryStream { rx, task }
    }

    /// The next checked bundle; `None` once every bundle was delivered.
    pub async fn next(&mut self) -> Option<Result<CheckedBundle, BundleError>> {
        self.rx.recv().await
    }
}

impl Drop for EntryStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One item of the node's checkpoint list, its signature checked.
#[derive(Debug)]
pub struct ListedCheckpoint {
    /// The size the list gives.
    pub listed_size: u64,
    /// The checkpoint, or why its note does not verify with the pinned key.
    pub checkpoint: Result<Checkpoint, CheckpointError>,
}

/// The node's checkpoints of sizes above `after`, in list order, signatures verified on the
/// pool; pages are fetched ahead of the caller in a task of their own until it is dropped.
pub struct CheckpointStream {
    rx: amp::Receiver<Result<Vec<ListedCheckpoint>, Error>>,
    task: tokio::task::JoinHandle<()>,
    page: std::vec::IntoIter<ListedCheckpoint>,
    done: bool,
}

impl CheckpointStream {
    /// Starts listing the checkpoints of sizes above `after` (all when `None`).
    pub fn start(
        client: Client,
        pool: Pool,
        key: NoteVerifier,
        after: Option<u64>,
    ) -> CheckpointStream {
        let (tx, rx) = amp::channel(CHECKPOINT_PAGES_AHEAD);
        let task = tokio::spawn(async move {
            let mut cursor = after.map(|a| a.to_string());
            loop {
                let page = match client
                    .checkpoints(cursor.as_deref(), Some(PAGE_LIMIT_MAX))
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let progressed = !page.checkpoints.is_empty();
                let items = verify_notes(&pool, &key, page.checkpoints).await;
                if tx.send(Ok(items)).await.is_err() {
                    return;
                }
                match page.next_cursor {
                    Some(c) if progressed && cursor.as_ref() != Some(&c) => cursor = Some(c),
                    Some(_) => {
                        let e =
                            Error::Decode("the checkpoint list's cursor did not advance".into());
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => return,
                }
            }
        });
        CheckpointStream {
            rx,
            task,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The next listed checkpoint; `None` at the end of the list.
    pub async fn next(&mut self) -> Result<Option<ListedCheckpoint>, Error> {
        loop {
            if let Some(item) = self.page.next() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv().await {
                Some(Ok(items)) => self.page = items.into_iter(),
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => self.done = true,
            }
        }
    }
}

impl Drop for CheckpointStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Verifies a page of notes on the pool, split across its workers, keeping list order.
async fn verify_notes(
    pool: &Pool,
    key: &NoteVerifier,
    items: Vec<CheckpointItem>,
) -> Vec<ListedCheckpoint> {
    let parts = pool.threads().clamp(1, items.len().max(1));
    let per = items.len().div_ceil(parts).max(1);
    let mut chunks: Vec<Vec<CheckpointItem>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(per).collect());
    }
    let jobs = chunks.into_iter().map(|chunk| {
        let key = key.clone();
        pool.run(move || {
            chunk
                .into_iter()
                .map(|item| ListedCheckpoint {
                    listed_size: item.size,
                    checkpoint: open_checkpoint(&item.note, &key).map(|(cp, _)| cp),
                })
                .collect::<Vec<_>>()
        })
    });
    futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(entries: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        for e in entries {
            b.extend_from_slice(&(e.len() as u16).to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    #[test]
    fn a_bundle_is_checked_from_the_first_index_asked() {
        let body = frame(&[b"a", b"b", b"c"]);
        let c = check_bundle(1, 3, BUNDLE_ENTRIES + 1, &body);
        assert_eq!(c.start, BUNDLE_ENTRIES + 1);
        assert_eq!(c.leaves, vec![leaf_hash(b"b"), leaf_hash(b"c")]);
        assert!(!c.short);
        // Not canonical entries: each decodes to an error, which the replay reports.
        assert!(c.entries.iter().all(|e| e.is_err()));
    }

    #[test]
    fn a_short_or_overlong_bundle_is_flagged() {
        let body = frame(&[b"a", b"b"]);
        let c = check_bundle(0, 3, 0, &body);
        assert!(c.short);
        assert_eq!(c.leaves.len(), 2);
        let mut long = frame(&[b"a"]);
        long.push(0);
        assert!(check_bundle(0, 1, 0, &long).short);
        assert!(check_bundle(0, 1, 0, &[0, 5, b'x']).short);
    }

    #[tokio::test]
    async fn the_pool_runs_jobs_and_answers_each() {
        let pool = Pool::new(2);
        let jobs = (0..20u64).map(|i| pool.run(move || i * i));
        let out = futures_util::future::join_all(jobs).await;
        assert_eq!(out, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    }
}
