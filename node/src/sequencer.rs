//! The sequencer (DESIGN §8): one thread owns the log and every write. It drains a bounded
//! queue, applies the writes in order (the writes of a linked request all or none,
//! [`Sequencer::submit_linked`]), commits them as one synced RocksDB batch, signs one
//! checkpoint, then answers the whole batch. It also writes the entries the rules require of
//! the node itself: tier changes that fell due or that a new tier policy causes
//! ([`crate::tiers`]), expiry of due lots, release of expired holds.
//!
//! Invariants: no write is answered before it is durable and covered by a signed checkpoint;
//! the queue never holds more than `queue_depth_max` writes (more are refused at once with
//! `overloaded`); reads never wait for the sequencer (they read committed data from RocksDB).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use ledger::entry::{EntryKind, TierPolicy, Void};
use ledger::types::{EntryId, LogTime};
use ledger_store::log::{CommitGate, Log, LogError, NoGate, Outcome, Write, WriteError};

use crate::metrics::Metrics;
use crate::tiers::TierKeeper;

mod committer;
use committer::Committer;

/// Most system entries of each kind (tier changes, expiries, releases) written per
/// housekeeping pass.
pub const HOUSEKEEPING_WRITES_MAX: usize = 1024;
/// How often the sequencer looks for due tier changes, expiries and releases.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);

/// What every commit of the sequencer passes (see [`CommitGate`]), and what it is told when
/// idle. [`NoGate`] on a node without a standby.
pub trait Gate: Send {
    /// The gate the log asks around each commit.
    fn commit_gate(&mut self) -> &mut dyn CommitGate;
    /// Called about every [`HOUSEKEEPING_INTERVAL`] on the sequencer thread.
    fn idle(&mut self) {}
    /// Whether the sequencer may write batches on a thread of its own while it applies the
    /// next (`committer`): only where nothing needs to be asked around each commit.
    fn pipelined(&self) -> bool {
        false
    }
}

impl Gate for NoGate {
    fn commit_gate(&mut self) -> &mut dyn CommitGate {
        self
    }
    fn pipelined(&self) -> bool {
        true
    }
}

/// Whether a write was logged now or found logged before (the API's `status`).
pub use loyalty_wire::WriteStatus;

/// The answer to a committed write.
#[derive(Debug, Clone)]
pub struct Committed {
    pub status: WriteStatus,
    pub index: u64,
    pub checkpoint: Arc<CheckpointInfo>,
}

/// The latest signed checkpoint.
#[derive(Debug)]
pub struct CheckpointInfo {
    pub size: u64,
    pub note: String,
}

/// Why a write was not committed. The HTTP layer maps each variant ([`crate::problem`]).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The node takes no writes now: starting, stopping, stopped after a failed commit, fenced
    /// off by a newer leader, or a standby.
    #[error("the node is not ready")]
    NotReady,
    /// The write queue is full.
    #[error("the write queue is full; retry later")]
    Overloaded,
    /// The log refused the write (its id, its size or the accounting rules).
    #[error(transparent)]
    Refused(#[from] WriteError),
    /// The commit failed; the sequencer stops and the node must be restarted.
    #[error("{0}")]
    Failed(String),
}

/// Writes queued together: they land in the same batch (one synced commit); `linked`: as one
/// linked chain, all or none ([`Log::append_linked_with`]).
struct Request {
    writes: Vec<Write>,
    linked: bool,
    reply: oneshot::Sender<Vec<Result<Committed, SubmitError>>>,
}

/// What readers share with the sequencer.
pub struct Shared {
    checkpoint: RwLock<Arc<CheckpointInfo>>,
    ready: AtomicBool,
    depth: AtomicUsize,
    /// While this flag is set (the clock guard holds writes after a clock jump), the
    /// housekeeping that logs what falls due by log time pauses.
    housekeeping_held: std::sync::OnceLock<Arc<AtomicBool>>,
}

impl Shared {
    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Arc<CheckpointInfo> {
        self.checkpoint.read().expect("checkpoint lock").clone()
    }

    /// Pauses the housekeeping whenever `flag` is set (set once, at start).
    pub fn hold_housekeeping_with(&self, flag: Arc<AtomicBool>) {
        let _ = self.housekeeping_held.set(flag);
    }

    fn housekeeping_held(&self) -> bool {
        self.housekeeping_held
            .get()
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// The shared state of a standby (node/src/ha): no sequencer runs, writes are refused,
    /// and the follower publishes each committed checkpoint it stores.
    pub fn for_standby(size: u64, note: String) -> Arc<Shared> {
        Arc::new(Shared {
            checkpoint: RwLock::new(Arc::new(CheckpointInfo { size, note })),
            ready: AtomicBool::new(false),
            depth: AtomicUsize::new(0),
            housekeeping_held: std::sync::OnceLock::new(),
        })
    }

    /// Publishes a checkpoint a standby stored (reads then serve up to it).
    pub fn set_checkpoint(&self, size: u64, note: String) {
        *self.checkpoint.write().expect("checkpoint lock") =
            Arc::new(CheckpointInfo { size, note });
    }

    /// Whether the sequencer is running and accepting writes.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Writes waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// A handle for submitting writes to the sequencer.
#[derive(Clone)]
pub struct Sequencer {
    tx: SyncSender<Request>,
    shared: Arc<Shared>,
}

/// The variable that shifts this node's clock by a signed number of milliseconds, for tests
/// that need time to pass (a settlement period to end) or one node's clock to be skewed. Never
/// set it in production.
pub const CLOCK_SKEW_ENV: &str = "LOYALTY_CLOCK_SKEW_MS";

/// The wall clock in ms since the Unix epoch (shifted by [`CLOCK_SKEW_ENV`] if set), as a log
/// time. Every clock reading of the node goes through here.
pub fn now() -> LogTime {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let skew = *SKEW.get_or_init(|| {
        std::env::var(CLOCK_SKEW_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        .saturating_add_signed(skew);
    LogTime::new(ms.min(LogTime::MAX.get())).unwrap_or(LogTime::MAX)
}

impl Sequencer {
    /// Starts the sequencer thread, which owns `log` until every handle is dropped.
    pub fn start(
        log: Log,
        queue_depth_max: usize,
        batch_writes_max: usize,
        metrics: Arc<Metrics>,
    ) -> (Sequencer, Arc<Shared>, std::thread::JoinHandle<()>) {
        Sequencer::start_gated(
            log,
            queue_depth_max,
            batch_writes_max,
            metrics,
            Box::new(NoGate),
        )
    }

    /// As [`Sequencer::start`], with every commit passing `gate` (a node with a standby: the
    /// batch is replicated and the commit point moved in the coordination store before any
    /// write of it is answered, see [`crate::ha`]). A refused commit stops the sequencer.
    pub fn start_gated(
        log: Log,
        queue_depth_max: usize,
        batch_writes_max: usize,
        metrics: Arc<Metrics>,
        gate: Box<dyn Gate>,
    ) -> (Sequencer, Arc<Shared>, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel::<Request>(queue_depth_max);
        let shared = Arc::new(Shared {
            checkpoint: RwLock::new(Arc::new(CheckpointInfo {
                size: log.size(),
                note: log.checkpoint_note().to_owned(),
            })),
            ready: AtomicBool::new(true),
            depth: AtomicUsize::new(0),
            housekeeping_held: std::sync::OnceLock::new(),
        });
        metrics.log_size.set(log.size() as i64);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || run(log, rx, thread_shared, batch_writes_max, metrics, gate))
            .expect("spawn the sequencer thread");
        (
            Sequencer {
                tx,
                shared: shared.clone(),
            },
            shared,
            handle,
        )
    }

    /// A handle that refuses every write (`not_ready`): what a standby's handlers hold.
    pub fn refusing(shared: Arc<Shared>) -> Sequencer {
        let (tx, _) = mpsc::sync_channel::<Request>(1);
        Sequencer { tx, shared }
    }

    /// Queues a write and waits until it is committed (or refused).
    pub async fn submit(&self, write: Write) -> Result<Committed, SubmitError> {
        self.submit_together(vec![write])
            .await?
            .pop()
            .unwrap_or(Err(SubmitError::NotReady))
    }

    /// Queues writes that must be committed in the same batch (one synced `WriteBatch`), in
    /// order, and waits for all of them. Each is applied, or refused, on its own; for writes
    /// that stand or fall together, see [`Sequencer::submit_linked`].
    pub async fn submit_together(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Committed, SubmitError>>, SubmitError> {
        self.queue(writes, false).await
    }

    /// Queues writes as one linked chain (spec/protocol.md §6, "Linked writes") and waits:
    /// they are committed in the same batch, in order, all or none. Answers every write's
    /// commit, or the error of the write that was refused (then nothing of the chain is
    /// logged; the log gives the others [`WriteError::LinkedWriteFailed`]). At most
    /// [`ledger_store::log::LINKED_WRITES_MAX`] writes (more are refused with
    /// [`WriteError::ChainTooLong`]).
    pub async fn submit_linked(&self, writes: Vec<Write>) -> Result<Vec<Committed>, SubmitError> {
        let answers = self.queue(writes, true).await?;
        let mut committed = Vec::with_capacity(answers.len());
        let mut linked = None;
        for answer in answers {
            match answer {
                Ok(c) => committed.push(c),
                Err(e @ SubmitError::Refused(WriteError::LinkedWriteFailed { .. })) => {
                    linked.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match linked {
            Some(e) => Err(e),
            None => Ok(committed),
        }
    }

    async fn queue(
        &self,
        writes: Vec<Write>,
        linked: bool,
    ) -> Result<Vec<Result<Committed, SubmitError>>, SubmitError> {
        if !self.shared.is_ready() {
            return Err(SubmitError::NotReady);
        }
        let (reply, rx) = oneshot::channel();
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Request {
            writes,
            linked,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(SubmitError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(SubmitError::NotReady);
            }
        }
        rx.await.map_err(|_| SubmitError::NotReady)
    }
}

fn run(
    mut log: Log,
    rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    batch_writes_max: usize,
    metrics: Arc<Metrics>,
    mut gate: Box<dyn Gate>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(batch_writes_max);
    let mut last_housekeeping = Instant::now();
    let mut tiers = match TierKeeper::load(log.store()) {
        Ok(t) => Some(t),
        Err(e) => {
            fail(&shared, &e);
            None
        }
    };
    let mut committer = gate
        .pipelined()
        .then(|| Committer::start(log.store().clone(), shared.clone(), metrics.clone()));
    while tiers.is_some() {
        let Some(carry) = gather(&rx, &mut batch, batch_writes_max, &shared, &metrics) else {
            break;
        };
        if !batch.is_empty() {
            let (writes, chains) = flatten(&batch);
            let _span = tracing::debug_span!("batch", size = writes.len()).entered();
            let served = match committer.as_mut() {
                Some(c) => c
                    .stage(
                        &mut log,
                        std::mem::take(&mut batch),
                        &writes,
                        &chains,
                        now(),
                    )
                    .and_then(|()| c.take_landed(&mut log, tiers.as_mut(), false)),
                None => serve(
                    &mut log,
                    &mut batch,
                    &writes,
                    &chains,
                    &shared,
                    &metrics,
                    tiers.as_mut(),
                    &mut *gate,
                ),
            };
            if let Err(e) = served {
                fail(&shared, &e);
                let fenced = matches!(e, LogError::Fenced(_));
                for req in batch.drain(..).chain(carry) {
                    // A fenced batch was not committed here; the caller retries with the
                    // same ids at the node that leads now.
                    answer_with(req, || match fenced {
                        true => SubmitError::NotReady,
                        false => SubmitError::Failed(e.to_string()),
                    });
                }
                break;
            }
        }
        if let Some(r) = carry {
            shared.depth.fetch_add(1, Ordering::Relaxed);
            batch.push(r);
            // Served first in the next round (with whatever arrives meanwhile).
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING_INTERVAL && !shared.housekeeping_held() {
            last_housekeeping = Instant::now();
            gate.idle();
            let Some(tiers) = tiers.as_mut() else { break };
            // Housekeeping reads the store itself: everything staged lands first.
            let landed = match committer.as_mut() {
                Some(c) => c.take_landed(&mut log, Some(&mut *tiers), true),
                None => Ok(()),
            };
            if let Err(e) = landed
                .and_then(|()| housekeeping(&mut log, tiers, &shared, &metrics, gate.commit_gate()))
            {
                fail(&shared, &e);
                break;
            }
        }
    }
    if let Some(c) = committer {
        c.finish(&mut log, tiers.as_mut());
    }
    // Drain what is left so no caller waits forever.
    shared.ready.store(false, Ordering::Release);
    for req in batch.drain(..).chain(rx.try_iter()) {
        answer_with(req, || SubmitError::NotReady);
    }
    if let Err(e) = log.store().flush() {
        tracing::error!(error = %e, "flush at shutdown failed");
    }
    tracing::info!(size = log.size(), "sequencer stopped");
}

/// Fills `batch` with what is queued, up to `batch_writes_max` writes; waits up to the
/// housekeeping interval when nothing is. Returns the request that did not fit (served in
/// the next round), or `None` once every handle is dropped.
fn gather(
    rx: &mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    batch_writes_max: usize,
    shared: &Shared,
    metrics: &Metrics,
) -> Option<Option<Request>> {
    // A request carried over from the last round is served without waiting.
    if batch.is_empty() {
        match rx.recv_timeout(HOUSEKEEPING_INTERVAL) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
    let mut count: usize = batch.iter().map(|r| r.writes.len()).sum();
    while count < batch_writes_max {
        match rx.try_recv() {
            Ok(r) => {
                count += r.writes.len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    // A batch never exceeds what one append accepts; the last request may wait for the next.
    let mut carry = None;
    if count > ledger_store::log::BATCH_WRITES_MAX && batch.len() > 1 {
        carry = batch.pop();
    }
    shared.depth.fetch_sub(
        batch.len() + usize::from(carry.is_some()),
        Ordering::Relaxed,
    );
    metrics.queue_depth.set(shared.queue_depth() as i64);
    Some(carry)
}

/// Applies and commits a batch in one step (a node with a standby, whose gate replicates each
/// commit before it is answered), then answers its requests.
#[allow(clippy::too_many_arguments)]
fn serve(
    log: &mut Log,
    batch: &mut Vec<Request>,
    writes: &[Write],
    chains: &[std::ops::Range<usize>],
    shared: &Shared,
    metrics: &Metrics,
    tiers: Option<&mut TierKeeper>,
    gate: &mut dyn Gate,
) -> Result<(), LogError> {
    let t0 = Instant::now();
    let outcomes = log.append_linked_with(writes, chains, now(), gate.commit_gate())?;
    metrics.observe_batch(writes.len(), t0.elapsed());
    let cp = publish(log.size(), log.checkpoint_note(), shared, metrics);
    follow_policies(log, tiers, &logged_policies(writes, &outcomes));
    answer(std::mem::take(batch), outcomes, &cp);
    Ok(())
}

/// Answers each request of a committed batch with its writes' outcomes, in order.
fn answer(requests: Vec<Request>, outcomes: Vec<Outcome>, cp: &Arc<CheckpointInfo>) {
    let mut outcomes = outcomes.into_iter();
    for req in requests {
        let mut answers = Vec::with_capacity(req.writes.len());
        for _ in &req.writes {
            answers.push(match outcomes.next() {
                Some(Outcome::Appended(index)) => Ok(Committed {
                    status: WriteStatus::Appended,
                    index,
                    checkpoint: cp.clone(),
                }),
                Some(Outcome::Existing(index)) => Ok(Committed {
                    status: WriteStatus::Existing,
                    index,
                    checkpoint: cp.clone(),
                }),
                Some(Outcome::Refused(e)) => Err(SubmitError::Refused(e)),
                None => Err(SubmitError::Failed("an outcome is missing".into())),
            });
        }
        let _ = req.reply.send(answers);
    }
}

/// Answers every write of a request that was not committed with the error `e` makes.
fn answer_with(req: Request, e: impl Fn() -> SubmitError) {
    let n = req.writes.len();
    let _ = req.reply.send((0..n).map(|_| Err(e())).collect());
}

/// The writes of a batch's requests, in order, and the ranges of those of linked requests.
fn flatten(batch: &[Request]) -> (Vec<Write>, Vec<std::ops::Range<usize>>) {
    let mut writes = Vec::new();
    let mut chains = Vec::new();
    for r in batch {
        let start = writes.len();
        writes.extend(r.writes.iter().cloned());
        if r.linked && !r.writes.is_empty() {
            chains.push(start..writes.len());
        }
    }
    (writes, chains)
}

fn fail(shared: &Shared, e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "a commit failed; the sequencer stops and the node must be restarted");
    shared.ready.store(false, Ordering::Release);
}

/// Publishes the signed checkpoint of `size` entries, `note`, to readers and the metrics.
fn publish(size: u64, note: &str, shared: &Shared, metrics: &Metrics) -> Arc<CheckpointInfo> {
    let cp = Arc::new(CheckpointInfo {
        size,
        note: note.to_owned(),
    });
    *shared.checkpoint.write().expect("checkpoint lock") = cp.clone();
    metrics.log_size.set(size as i64);
    cp
}

/// The tier policies a batch appended, by index: each starts a policy pass once the batch is
/// durable ([`follow_policies`]).
fn logged_policies(writes: &[Write], outcomes: &[Outcome]) -> Vec<(u64, TierPolicy)> {
    writes
        .iter()
        .zip(outcomes)
        .filter_map(|(w, o)| match (&w.kind, o) {
            (EntryKind::TierPolicy(p), Outcome::Appended(index)) => Some((*index, p.clone())),
            _ => None,
        })
        .collect()
}

/// Starts a policy pass for each tier policy a durable batch appended. The pass record is
/// node-local: a policy met without it is followed at the next housekeeping anyway
/// ([`TierKeeper::plan`]), so a failure to record it is only logged.
fn follow_policies(log: &Log, tiers: Option<&mut TierKeeper>, policies: &[(u64, TierPolicy)]) {
    let Some(tiers) = tiers else { return };
    for (index, policy) in policies {
        if let Err(e) = tiers.policy_logged(log.store(), *index, policy) {
            tracing::warn!(error = %e, "recording a tier policy pass failed");
        }
    }
}

/// Writes what the rules require of the node that no request asks for: tier changes that
/// fell due or that a new tier policy causes ([`TierKeeper::plan`]: a bounded walk of the
/// state's due-index, a node-local deferred index, a bounded pass over all members after each
/// policy), expiry of due lots and release of expired holds; at most
/// [`HOUSEKEEPING_WRITES_MAX`] of each per pass, the rest in the next. Tier changes after an
/// earning are logged in the earning's own commit ([`Log::append`]). The tier housekeeping's
/// progress is recorded only after the commit.
fn housekeeping(
    log: &mut Log,
    tiers: &mut TierKeeper,
    shared: &Shared,
    metrics: &Metrics,
    gate: &mut dyn CommitGate,
) -> Result<(), LogError> {
    let at = log.next_time(now());
    let state = log.state();
    let size = log.size();
    let plan = tiers.plan(state, log.store(), at, HOUSEKEEPING_WRITES_MAX)?;
    let mut writes = Vec::new();
    for change in &plan.changes {
        writes.push(Write {
            id: system_id(&format!("sys.tier.{size}.{}", writes.len())),
            kind: EntryKind::TierChange(change.clone()),
        });
    }
    for x in state
        .due_expiries(at, HOUSEKEEPING_WRITES_MAX)
        .map_err(LogError::State)?
    {
        writes.push(Write {
            id: system_id(&format!("sys.expire.{}.{size}", x.lot)),
            kind: EntryKind::Expire(x),
        });
    }
    for hold in state
        .due_hold_releases(at, HOUSEKEEPING_WRITES_MAX)
        .map_err(LogError::State)?
    {
        let index = state
            .hold(&hold)
            .map_err(LogError::State)?
            .map_or(0, |h| h.index.get());
        writes.push(Write {
            id: system_id(&format!("sys.release.{index}")),
            kind: EntryKind::Void(Void { hold }),
        });
    }
    let mut refused = Vec::new();
    if !writes.is_empty() {
        let t0 = Instant::now();
        let outcomes = log.append_with(&writes, at, gate)?;
        metrics.observe_batch(writes.len(), t0.elapsed());
        for (w, o) in writes.iter().zip(&outcomes) {
            if let Outcome::Refused(e) = o {
                tracing::warn!(id = %w.id, error = %e, "system entry refused");
                if let EntryKind::TierChange(c) = &w.kind {
                    refused.push(c.member.clone());
                }
            }
        }
        publish(log.size(), log.checkpoint_note(), shared, metrics);
    }
    tiers.finish(log.store(), plan, &refused, at)
}

fn system_id(s: &str) -> EntryId {
    s.parse().expect("system ids are valid entry ids")
}

#[cfg(test)]
mod tests;
