//! The sequencer's second stage on a node without a standby: a thread that writes the batches
//! the sequencer staged ([`Log::stage_linked`]), in order, each as one synced commit, then
//! publishes its checkpoint and answers its requests. Meanwhile the sequencer applies the next
//! batch on top of the staged ones, so applying one batch and syncing the one before overlap
//! (a two-stage group commit; before, the sequencer waited for every sync).
//!
//! Invariants: a request is answered only after its batch, and every batch before it, is
//! durable; batches are written in the order staged; after a failed write nothing more is
//! written and every later request is answered with the failure; at most one staged batch
//! waits while another is written (the hand-over is a rendezvous), so what is staged stays
//! bounded.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use ledger::entry::TierPolicy;
use ledger_store::log::{Log, LogError, Outcome, Staged};
use ledger_store::store::Store;

use super::{
    answer, answer_with, fail, follow_policies, logged_policies, publish, Request, Shared,
    SubmitError,
};
use crate::metrics::Metrics;
use crate::tiers::TierKeeper;

/// A staged batch handed to the committer with the requests it answers.
struct Landing {
    /// `None`: the batch logs nothing; its answers wait for the batches before it.
    staged: Option<Staged>,
    requests: Vec<Request>,
    outcomes: Vec<Outcome>,
    /// The tier policies it logs, by index (followed once it is durable).
    policies: Vec<(u64, TierPolicy)>,
    writes: usize,
    started: Instant,
}

/// A batch the committer is done with.
enum Landed {
    Written {
        staged: Option<Box<Staged>>,
        policies: Vec<(u64, TierPolicy)>,
    },
    Failed,
}

/// The sequencer's handle on its committer thread.
pub(super) struct Committer {
    tx: Option<SyncSender<Landing>>,
    landed: Receiver<Landed>,
    in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How the committer writes one staged batch: [`Staged::write`] into the log's store (a test
/// makes a write fail).
pub(super) type Writer = Box<dyn FnMut(&Staged) -> Result<(), String> + Send>;

impl Committer {
    pub(super) fn start(store: Store, shared: Arc<Shared>, metrics: Arc<Metrics>) -> Committer {
        Committer::start_with(
            Box::new(move |staged: &Staged| staged.write(&store).map_err(|e| e.to_string())),
            shared,
            metrics,
        )
    }

    pub(super) fn start_with(
        writer: Writer,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
    ) -> Committer {
        let (tx, rx) = mpsc::sync_channel::<Landing>(0);
        let (done, landed) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || write_in_order(writer, &rx, &done, &shared, &metrics))
            .expect("spawn the committer thread");
        Committer {
            tx: Some(tx),
            landed,
            in_flight: 0,
            thread: Some(thread),
        }
    }

    /// Applies `requests` (their `writes`, linked in `chains`) on top of what is staged and
    /// hands the batch to the committer, which answers the requests once it is durable. Waits
    /// only while the committer is busy with the batch before. `Err`: the log failed; the
    /// requests were answered with the failure and the sequencer must stop.
    pub(super) fn stage(
        &mut self,
        log: &mut Log,
        requests: Vec<Request>,
        writes: &[ledger_store::log::Write],
        chains: &[std::ops::Range<usize>],
        at: ledger::types::LogTime,
    ) -> Result<(), LogError> {
        let started = Instant::now();
        let (outcomes, staged) = match log.stage_linked(writes, chains, at) {
            Ok(s) => s,
            Err(e) => {
                for req in requests {
                    answer_with(req, || SubmitError::Failed(e.to_string()));
                }
                return Err(e);
            }
        };
        let policies = logged_policies(writes, &outcomes);
        let landing = Landing {
            staged,
            requests,
            outcomes,
            policies,
            writes: writes.len(),
            started,
        };
        let tx = self.tx.as_ref().ok_or(LogError::Poisoned)?;
        if tx.send(landing).is_err() {
            log.poison();
            return Err(LogError::Poisoned);
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Takes back the batches written so far (all staged ones when `all`, waiting for them):
    /// they land in the log, and the tier policies they logged are followed. `Err`: a write
    /// failed; the log is poisoned and the sequencer must stop.
    pub(super) fn take_landed(
        &mut self,
        log: &mut Log,
        mut tiers: Option<&mut TierKeeper>,
        all: bool,
    ) -> Result<(), LogError> {
        while self.in_flight > 0 {
            let landed = if all {
                self.landed.recv().ok()
            } else {
                match self.landed.try_recv() {
                    Ok(l) => Some(l),
                    Err(mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(mpsc::TryRecvError::Disconnected) => None,
                }
            };
            self.in_flight -= 1;
            match landed {
                Some(Landed::Written { staged, policies }) => {
                    if let Some(staged) = staged {
                        log.landed(*staged)?;
                    }
                    follow_policies(log, tiers.as_deref_mut(), &policies);
                }
                Some(Landed::Failed) | None => {
                    log.poison();
                    return Err(LogError::Poisoned);
                }
            }
        }
        Ok(())
    }

    /// Stops the committer once it has written (or refused) everything handed to it, and lands
    /// what it wrote.
    pub(super) fn finish(mut self, log: &mut Log, tiers: Option<&mut TierKeeper>) {
        self.tx = None;
        let _ = self.take_landed(log, tiers, true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The committer thread: writes each staged batch, then publishes and answers it.
fn write_in_order(
    mut writer: Writer,
    rx: &Receiver<Landing>,
    done: &mpsc::Sender<Landed>,
    shared: &Shared,
    metrics: &Metrics,
) {
    let mut failed: Option<String> = None;
    for landing in rx {
        let written = match (&failed, &landing.staged) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(staged)) => writer(staged),
            (None, None) => Ok(()),
        };
        match written {
            Ok(()) => {
                metrics.observe_batch(landing.writes, landing.started.elapsed());
                let cp = match &landing.staged {
                    Some(staged) => publish(staged.size(), staged.note(), shared, metrics),
                    None => shared.checkpoint(),
                };
                answer(landing.requests, landing.outcomes, &cp);
                let _ = done.send(Landed::Written {
                    staged: landing.staged.map(Box::new),
                    policies: landing.policies,
                });
            }
            Err(e) => {
                if failed.is_none() {
                    fail(shared, &e);
                    failed = Some(e.clone());
                }
                for req in landing.requests {
                    answer_with(req, || SubmitError::Failed(e.clone()));
                }
                let _ = done.send(Landed::Failed);
            }
        }
    }
}
