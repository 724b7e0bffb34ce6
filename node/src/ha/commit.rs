//! The primary's side of the commit point: [`Fence`] is the sequencer's [`CommitGate`].
//!
//! For each batch, before anything of it is stored here: ship it to the standby and wait for
//! its synced acknowledgement; when it acknowledged, move the committed head in the
//! coordination store (one compare-and-swap that also checks the leadership) to the new size
//! and root with both nodes in sync, then commit locally. When the standby did not
//! acknowledge, first remove it from the in-sync set (a compare-and-swap of the unchanged
//! head), then commit locally, then move the head with this node alone in sync.
//!
//! Invariants:
//! - no batch is answered or published unless the compare-and-swap that records it succeeded
//!   under this node's lease (a fenced leader stops: its log is poisoned);
//! - the in-sync set written with a head names only nodes that durably hold every entry up
//!   to it: the standby is listed only when it acknowledged this very batch;
//! - this node's store never holds a batch beyond the committed head while another node is
//!   listed in sync, so a takeover never has to undo anything here;
//! - the standby is listed in sync only while its copy of the node-local records allows it
//!   ([`super::local::LocalLink::standby_may_be_in_sync`]); the records' shipper removes it
//!   from the in-sync set through this gate ([`Fence::drop_standby`]), the only writer of the
//!   head, so that every compare-and-swap starts from the head the last one wrote.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_store::log::{CommitGate, Prepared};
use ledger_store::mirror::CHUNK_ENTRIES_MAX;
use ledger_store::store::Store;

use super::lock::{Head, Lease, LockBackend, LockError, Locked};
use super::{ReplicateAnswer, ReplicateBody, REPLICATE_PATH};

/// How often a primary without an in-sync standby offers it a batch anyway (the standby's
/// answer says where it stands).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Pause between two attempts to reach the coordination store.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Where the restore guard stands (node/src/ha/guard.rs); commits wait for `PASSED`.
pub const GUARD_PENDING: u8 = 0;
pub const GUARD_PASSED: u8 = 1;
pub const GUARD_REFUSED: u8 = 2;

/// What the leader shows of the commit point (`GET /v1/ha/status`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CommitStatus {
    pub committed_size: u64,
    pub in_sync: Vec<String>,
    pub epoch: i64,
    /// The standby's position as it last answered (`None`: unknown or unreachable).
    pub standby_size: Option<u64>,
    pub batches_replicated: u64,
    pub batches_alone: u64,
    /// Why this node can no longer commit, once it cannot.
    pub fenced: Option<String>,
}

/// The sequencer's gate on a node that leads under coordination.
pub struct Fence {
    pub backend: Arc<dyn LockBackend>,
    pub lease: Lease,
    pub locked: Locked,
    pub me: String,
    pub peer_name: String,
    pub peer_url: String,
    pub rt: tokio::runtime::Handle,
    pub http: reqwest::Client,
    pub store: Store,
    pub replicate_timeout: Duration,
    pub lease_ttl: Duration,
    pub guard: Arc<AtomicU8>,
    pub status: Arc<Mutex<CommitStatus>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    peer_pos: Option<u64>,
    last_probe: Option<Instant>,
    acked: bool,
    fenced: Option<String>,
    local: Option<Arc<super::local::Shipper>>,
}

/// A [`Fence`] shared by the sequencer and the node-local records' shipper
/// ([`super::local::Shipper`]); each holds the lock for one step.
pub struct SharedFence(pub Arc<Mutex<Fence>>);

impl crate::sequencer::Gate for SharedFence {
    fn commit_gate(&mut self) -> &mut dyn CommitGate {
        self
    }

    fn idle(&mut self) {
        crate::sequencer::Gate::idle(&mut *self.0.lock().expect("fence lock"));
    }
}

impl CommitGate for SharedFence {
    fn before_commit(&mut self, p: &Prepared<'_>) -> Result<(), String> {
        self.0.lock().expect("fence lock").before_commit(p)
    }

    fn after_commit(&mut self, p: &Prepared<'_>) -> Result<(), String> {
        self.0.lock().expect("fence lock").after_commit(p)
    }
}

impl Fence {
    /// A gate for the leadership `lease`, starting from the committed head `locked`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backend: Arc<dyn LockBackend>,
        lease: Lease,
        locked: Locked,
        ha: &crate::config::Ha,
        rt: tokio::runtime::Handle,
        store: Store,
        guard: Arc<AtomicU8>,
        status: Arc<Mutex<CommitStatus>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Fence {
        {
            let mut s = status.lock().expect("status lock");
            s.committed_size = locked.head.size;
            s.in_sync = locked.head.in_sync.clone();
            s.epoch = lease.epoch;
        }
        Fence {
            backend,
            lease,
            locked,
            me: ha.name.clone(),
            peer_name: ha.peer_name.clone(),
            peer_url: ha.peer_url.trim_end_matches('/').to_owned(),
            rt,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            store,
            replicate_timeout: Duration::from_millis(ha.replicate_timeout_ms),
            lease_ttl: Duration::from_secs(ha.lease_ttl_s as u64),
            guard,
            status,
            metrics,
            peer_pos: None,
            last_probe: None,
            acked: false,
            fenced: None,
            local: None,
        }
    }

    /// The gate of a leader that replicates its node-local records too (through `shipper`):
    /// the standby is listed in sync only while its copy of them allows it.
    pub fn with_local(mut self, shipper: Arc<super::local::Shipper>) -> Fence {
        self.local = Some(shipper);
        self
    }

    /// Whether the standby's copy of the node-local records allows listing it in sync, after
    /// a few rounds to bring it up to date when it is behind.
    fn local_ok(&self) -> bool {
        self.local
            .as_ref()
            .is_none_or(|s| s.link.standby_may_be_in_sync() || s.try_sync())
    }

    /// Whether this gate can no longer commit.
    pub fn is_fenced(&self) -> bool {
        self.fenced.is_some() || self.lease.is_lost()
    }

    /// Whether the committed head lists another node than this one in sync.
    pub fn lists_peer(&self) -> bool {
        self.locked.head.in_sync.iter().any(|n| n != &self.me)
    }

    /// Removes the standby from the in-sync set (a compare-and-swap of the unchanged head);
    /// a failure fences this gate.
    pub fn drop_standby(&mut self, why: &str) -> Result<(), String> {
        if !self.lists_peer() {
            return Ok(());
        }
        let mut head = self.locked.head.clone();
        head.epoch = self.lease.epoch;
        head.leader = self.me.clone();
        head.in_sync = vec![self.me.clone()];
        tracing::warn!(standby = %self.peer_name, why, "the standby leaves the in-sync set");
        self.cas(head).map_err(|e| self.fence(e))
    }

    fn wait_for_guard(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.guard.load(Ordering::Acquire) {
                GUARD_PASSED => return Ok(()),
                GUARD_REFUSED => return Err("the restore guard refused to sign".into()),
                _ if Instant::now() > deadline => {
                    return Err("the restore guard did not finish".into())
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Ships the batch (with the committed entries the standby lacks) and says whether the
    /// standby acknowledged holding everything up to `p.size` durably.
    fn ship(&mut self, p: &Prepared<'_>) -> bool {
        let from = match self.peer_pos {
            Some(pos) if pos <= p.start && p.size - pos <= CHUNK_ENTRIES_MAX => pos,
            Some(_) | None => {
                if self
                    .last_probe
                    .is_some_and(|t| t.elapsed() < PROBE_INTERVAL)
                {
                    return false;
                }
                p.start
            }
        };
        if !self.local_ok() {
            // Its copy of the node-local records is behind: it catches up on both first.
            self.last_probe = Some(Instant::now());
            return false;
        }
        let mut entries = Vec::with_capacity((p.size - from) as usize);
        let mut i = from;
        while i < p.start {
            match self.store.entries(i, p.start) {
                Ok(page) if !page.is_empty() => {
                    for e in page {
                        entries.push(e);
                        i += 1;
                    }
                }
                _ => return false,
            }
        }
        entries.extend(p.entries.iter().map(|(_, b)| b.clone()));
        let body = ReplicateBody {
            epoch: self.lease.epoch,
            start: from,
            entries,
            note: p.note.clone(),
        };
        let url = format!("{}{REPLICATE_PATH}", self.peer_url);
        let req = self
            .http
            .post(url)
            .timeout(self.replicate_timeout)
            .header("content-type", "application/octet-stream")
            .body(body.encode());
        let t0 = Instant::now();
        let answer = self.rt.block_on(async move {
            let r = req.send().await.ok()?;
            let status = r.status();
            let a: ReplicateAnswer = r.json().await.ok()?;
            Some((status, a))
        });
        self.last_probe = Some(Instant::now());
        self.metrics
            .ha_replicate_latency
            .observe(t0.elapsed().as_secs_f64());
        match answer {
            Some((s, a)) if s.is_success() && a.staged_end == Some(p.size) => {
                self.peer_pos = Some(p.size);
                true
            }
            Some((_, a)) => {
                self.peer_pos = Some(a.size);
                false
            }
            None => {
                self.peer_pos = None;
                false
            }
        }
    }

    /// Moves the committed head to `new` by compare-and-swap, retrying an unreachable store
    /// for up to the lease's time to live.
    fn cas(&mut self, new: Head) -> Result<(), String> {
        let deadline = Instant::now() + self.lease_ttl;
        loop {
            if self.lease.is_lost() {
                return Err("the leadership lease was lost".into());
            }
            let t0 = Instant::now();
            let r = self.rt.block_on(async {
                tokio::time::timeout(
                    super::etcd::REQUEST_TIMEOUT,
                    self.backend.replace(&self.lease, &self.locked, &new),
                )
                .await
                .unwrap_or_else(|_| Err(LockError::Unavailable("timed out".into())))
            });
            self.metrics
                .ha_commit_point_latency
                .observe(t0.elapsed().as_secs_f64());
            match r {
                Ok(l) => {
                    self.locked = l;
                    self.metrics
                        .ha_standby_in_sync
                        .set(i64::from(new.in_sync.contains(&self.peer_name)));
                    let mut s = self.status.lock().expect("status lock");
                    s.committed_size = new.size;
                    s.in_sync = new.in_sync.clone();
                    return Ok(());
                }
                Err(LockError::Conflict) => {
                    // The write may have landed on an earlier attempt whose answer was lost.
                    let now = self.rt.block_on(self.backend.fetch());
                    if let Ok(Some(l)) = now {
                        if l.head == new {
                            self.locked = l;
                            return Ok(());
                        }
                        return Err(format!(
                            "fenced: the committed head is now size {} of epoch {} by {}",
                            l.head.size, l.head.epoch, l.head.leader
                        ));
                    }
                    return Err("fenced: the leadership was lost".into());
                }
                Err(LockError::Unavailable(e)) => {
                    if Instant::now() > deadline {
                        return Err(format!("the coordination store is unreachable: {e}"));
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn head(&self, p: &Prepared<'_>, in_sync: Vec<String>) -> Head {
        Head {
            epoch: self.lease.epoch,
            leader: self.me.clone(),
            size: p.size,
            root: hex::encode(p.root),
            in_sync,
        }
    }
}

impl Fence {
    fn fence(&mut self, reason: String) -> String {
        self.fenced = Some(reason.clone());
        self.status.lock().expect("status lock").fenced = Some(reason.clone());
        reason
    }

    /// Asks the standby where it stands; `None` when it does not answer.
    fn standby_size(&self) -> Option<u64> {
        let url = format!("{}{}", self.peer_url, super::STATUS_PATH);
        let req = self.http.get(url).timeout(self.replicate_timeout);
        self.rt.block_on(async move {
            let r = req.send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            if v.get("role")?.as_str()? != "standby" {
                return None;
            }
            v.get("size")?.as_u64()
        })
    }
}

impl crate::sequencer::Gate for Fence {
    fn commit_gate(&mut self) -> &mut dyn CommitGate {
        self
    }

    /// With no batch to carry it, a standby that caught up (it holds every committed entry)
    /// joins the in-sync set by a compare-and-swap of the unchanged head.
    fn idle(&mut self) {
        if self.fenced.is_some()
            || self.lease.is_lost()
            || self.guard.load(Ordering::Acquire) != GUARD_PASSED
            || self.locked.head.in_sync.contains(&self.peer_name)
            || self
                .last_probe
                .is_some_and(|t| t.elapsed() < PROBE_INTERVAL)
        {
            return;
        }
        self.last_probe = Some(Instant::now());
        let size = self.standby_size();
        self.peer_pos = size;
        self.status.lock().expect("status lock").standby_size = size;
        if size != Some(self.locked.head.size) || !self.local_ok() {
            return;
        }
        let mut head = self.locked.head.clone();
        head.epoch = self.lease.epoch;
        head.leader = self.me.clone();
        head.in_sync = vec![self.me.clone(), self.peer_name.clone()];
        match self.cas(head) {
            Ok(()) => {
                tracing::info!(standby = %self.peer_name, size = self.locked.head.size, "the standby caught up; it is in sync")
            }
            Err(e) => {
                let e = self.fence(e);
                tracing::error!(error = %e, "this node can no longer commit");
            }
        }
    }
}

impl CommitGate for Fence {
    fn before_commit(&mut self, p: &Prepared<'_>) -> Result<(), String> {
        if let Some(f) = &self.fenced {
            return Err(f.clone());
        }
        self.wait_for_guard().map_err(|e| self.fence(e))?;
        if self.lease.is_lost() {
            return Err(self.fence("the leadership lease was lost".into()));
        }
        self.acked = self.ship(p);
        self.status.lock().expect("status lock").standby_size = self.peer_pos;
        if self.acked {
            let head = self.head(p, vec![self.me.clone(), self.peer_name.clone()]);
            self.cas(head).map_err(|e| self.fence(e))?;
            self.status.lock().expect("status lock").batches_replicated += 1;
            self.metrics
                .ha_batches
                .get_or_create(&crate::metrics::HaCommitLabels {
                    with: "standby".into(),
                })
                .inc();
        } else if self.locked.head.in_sync.iter().any(|n| n != &self.me) {
            // The standby is dropped from the in-sync set before this node goes on alone.
            self.drop_standby("it did not acknowledge the batch")?;
        }
        Ok(())
    }

    fn after_commit(&mut self, p: &Prepared<'_>) -> Result<(), String> {
        if !self.acked {
            let head = self.head(p, vec![self.me.clone()]);
            self.cas(head).map_err(|e| self.fence(e))?;
            self.status.lock().expect("status lock").batches_alone += 1;
            self.metrics
                .ha_batches
                .get_or_create(&crate::metrics::HaCommitLabels {
                    with: "alone".into(),
                })
                .inc();
        }
        Ok(())
    }
}
