//! The coordination store behind the commit point (issue 18): one strongly consistent record
//! per log, the committed head, replaced only by compare-and-swap, and a leadership lease.
//!
//! The shape follows Sunlight's `LockBackend` (`Fetch`, `Create`, `Replace` of a signed
//! checkpoint by compare-and-swap), with the leadership lease beside it, so that PostgreSQL or
//! a cloud store's conditional write can implement it later. [`super::etcd::EtcdLock`] is the
//! implementation; [`MemoryLock`] is the same contract in memory, for tests.
//!
//! Invariants (each implementation keeps them):
//! - [`LockBackend::replace`] succeeds only when the stored head is still exactly `old` (same
//!   version) **and** `lease` still holds the leadership: a paused or partitioned old leader
//!   whose lease expired, or who was replaced, can never move the head;
//! - at most one lease holds the leadership at a time, and every new leadership has a larger
//!   epoch than any before it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A boxed future, so that the trait can be used as `dyn LockBackend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The committed head of the log: what the last successful commit wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The epoch of the leadership that wrote it.
    pub epoch: i64,
    /// The name of the node that wrote it.
    pub leader: String,
    /// Log size.
    pub size: u64,
    /// Merkle root (hex) of the first `size` entries.
    pub root: String,
    /// The nodes that durably hold the first `size` entries (the leader first). Only these
    /// may take over.
    pub in_sync: Vec<String>,
}

/// A head as stored, with the version a compare-and-swap compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub head: Head,
    pub version: i64,
}

/// Who leads, as the leadership record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderInfo {
    pub name: String,
    /// The URL apps and the standby reach the leader at.
    pub url: String,
    #[serde(default)]
    pub epoch: i64,
}

/// A leadership held by this process. `lost` is set as soon as the lease could not be kept
/// alive; the compare-and-swap is what fences, the flag only lets the leader stop early.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    pub epoch: i64,
    pub lost: Arc<AtomicBool>,
}

impl Lease {
    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

/// Why a coordination-store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The compare failed: the head moved, or the lease no longer leads.
    #[error("the committed head moved or the leadership was lost")]
    Conflict,
    /// The store could not be reached or answered an error; the outcome of a write is unknown.
    #[error("coordination store unavailable: {0}")]
    Unavailable(String),
}

/// The operations the commit point needs from a strongly consistent store.
pub trait LockBackend: Send + Sync {
    /// The committed head, if any commit happened under coordination.
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Locked>, LockError>>;
    /// Stores the first head, only when there is none, while `lease` leads.
    fn create<'a>(
        &'a self,
        lease: &'a Lease,
        head: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>>;
    /// Replaces `old` by `new` only when the stored head is still `old` and `lease` leads.
    fn replace<'a>(
        &'a self,
        lease: &'a Lease,
        old: &'a Locked,
        new: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>>;
    /// Takes the leadership when nobody holds it (`None` when someone does), with a lease of
    /// `ttl_s` seconds kept alive in the background until [`LockBackend::resign`] or loss.
    fn campaign<'a>(
        &'a self,
        me: &'a LeaderInfo,
        ttl_s: i64,
    ) -> BoxFuture<'a, Result<Option<Lease>, LockError>>;
    /// The current leader, if any.
    fn leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, LockError>>;
    /// Gives the leadership up at once.
    fn resign<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>>;
    /// Asks the leader to hand over to `to` (a manual switchover); `None` clears the request.
    fn request_switchover<'a>(
        &'a self,
        to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LockError>>;
    /// The node a switchover was requested to, if any.
    fn switchover(&self) -> BoxFuture<'_, Result<Option<String>, LockError>>;
}

#[derive(Default)]
struct MemoryInner {
    head: Option<Locked>,
    leader: Option<(LeaderInfo, Lease)>,
    switchover: Option<String>,
    revision: i64,
    history: Vec<Head>,
}

/// [`LockBackend`] in memory, with [`MemoryLock::expire`] standing for a lease running out.
#[derive(Default, Clone)]
pub struct MemoryLock {
    inner: Arc<Mutex<MemoryInner>>,
}

impl MemoryLock {
    /// Ends the current leadership as an expired lease would.
    pub fn expire(&self) {
        let mut g = self.inner.lock().expect("memory lock");
        if let Some((_, lease)) = g.leader.take() {
            lease.lost.store(true, Ordering::Release);
        }
    }

    /// Every head written, oldest first.
    pub fn history(&self) -> Vec<Head> {
        self.inner.lock().expect("memory lock").history.clone()
    }

    fn leads(g: &MemoryInner, lease: &Lease) -> bool {
        g.leader.as_ref().is_some_and(|(_, l)| l.id == lease.id)
    }
}

impl LockBackend for MemoryLock {
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Locked>, LockError>> {
        Box::pin(async move { Ok(self.inner.lock().expect("memory lock").head.clone()) })
    }

    fn create<'a>(
        &'a self,
        lease: &'a Lease,
        head: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>> {
        Box::pin(async move {
            let mut g = self.inner.lock().expect("memory lock");
            if g.head.is_some() || !Self::leads(&g, lease) {
                return Err(LockError::Conflict);
            }
            g.revision += 1;
            let l = Locked {
                head: head.clone(),
                version: g.revision,
            };
            g.head = Some(l.clone());
            g.history.push(l.head.clone());
            Ok(l)
        })
    }

    fn replace<'a>(
        &'a self,
        lease: &'a Lease,
        old: &'a Locked,
        new: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>> {
        Box::pin(async move {
            let mut g = self.inner.lock().expect("memory lock");
            if g.head.as_ref().map(|h| h.version) != Some(old.version) || !Self::leads(&g, lease) {
                return Err(LockError::Conflict);
            }
            g.revision += 1;
            let l = Locked {
                head: new.clone(),
                version: g.revision,
            };
            g.head = Some(l.clone());
            g.history.push(l.head.clone());
            Ok(l)
        })
    }

    fn campaign<'a>(
        &'a self,
        me: &'a LeaderInfo,
        _ttl_s: i64,
    ) -> BoxFuture<'a, Result<Option<Lease>, LockError>> {
        Box::pin(async move {
            let mut g = self.inner.lock().expect("memory lock");
            if g.leader.is_some() {
                return Ok(None);
            }
            g.revision += 1;
            let lease = Lease {
                id: g.revision,
                epoch: g.revision,
                lost: Arc::new(AtomicBool::new(false)),
            };
            let mut info = me.clone();
            info.epoch = lease.epoch;
            g.leader = Some((info, lease.clone()));
            Ok(Some(lease))
        })
    }

    fn leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, LockError>> {
        Box::pin(async move {
            Ok(self
                .inner
                .lock()
                .expect("memory lock")
                .leader
                .as_ref()
                .map(|(i, _)| i.clone()))
        })
    }

    fn resign<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let mut g = self.inner.lock().expect("memory lock");
            if Self::leads(&g, lease) {
                g.leader = None;
            }
            lease.lost.store(true, Ordering::Release);
            Ok(())
        })
    }

    fn request_switchover<'a>(
        &'a self,
        to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            self.inner.lock().expect("memory lock").switchover = to.map(str::to_owned);
            Ok(())
        })
    }

    fn switchover(&self) -> BoxFuture<'_, Result<Option<String>, LockError>> {
        Box::pin(async move { Ok(self.inner.lock().expect("memory lock").switchover.clone()) })
    }
}
