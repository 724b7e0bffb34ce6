//! The leader's side of the node-local records' stream: the journal, the request layer that
//! holds answers until their records are released, and the shipper.

use loyalty_wire::ErrorCode;

use super::*;

struct JournalInner {
    /// Sequence number of `writes[0]`.
    first: u64,
    writes: VecDeque<Ops>,
    bytes: usize,
}

impl JournalInner {
    fn next(&self) -> u64 {
        self.first + self.writes.len() as u64
    }
}

/// The leader's journal of node-local writes, bounded; seen by the store as its
/// [`LocalObserver`].
pub struct Journal {
    gen: i64,
    inner: Mutex<JournalInner>,
    wake: Condvar,
}

impl Journal {
    /// An empty journal of generation `gen` (the leadership's epoch).
    pub fn new(gen: i64) -> Journal {
        Journal {
            gen,
            inner: Mutex::new(JournalInner {
                first: 0,
                writes: VecDeque::new(),
                bytes: 0,
            }),
            wake: Condvar::new(),
        }
    }

    /// The sequence number the next write will get.
    pub fn next(&self) -> u64 {
        self.inner.lock().expect("journal lock").next()
    }

    /// The oldest sequence number still held.
    fn first(&self) -> u64 {
        self.inner.lock().expect("journal lock").first
    }

    /// Writes from `from` on, at most about `bytes_max` bytes (at least one); `None` when
    /// `from` is no longer held.
    fn from(&self, from: u64, bytes_max: usize) -> Option<Vec<Ops>> {
        let g = self.inner.lock().expect("journal lock");
        if from < g.first || from > g.next() {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for ops in g.writes.iter().skip((from - g.first) as usize) {
            if !out.is_empty() && bytes + ops_bytes(ops) > bytes_max {
                break;
            }
            bytes += ops_bytes(ops);
            out.push(ops.clone());
        }
        Some(out)
    }

    /// Forgets the writes before `seq`.
    fn trim_below(&self, seq: u64) {
        let mut g = self.inner.lock().expect("journal lock");
        while g.first < seq {
            let Some(ops) = g.writes.pop_front() else {
                break;
            };
            g.bytes -= ops_bytes(&ops);
            g.first += 1;
        }
    }

    /// Waits up to `timeout` for a write at or after `seq`.
    fn wait_beyond(&self, seq: u64, timeout: Duration) {
        let g = self.inner.lock().expect("journal lock");
        if g.next() > seq {
            return;
        }
        let _ = self.wake.wait_timeout(g, timeout);
    }
}

impl LocalObserver for Journal {
    fn written(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let ops: Ops = records
            .iter()
            .filter(|(k, _)| replicated(k))
            .cloned()
            .collect();
        if ops.is_empty() {
            return;
        }
        let mut g = self.inner.lock().expect("journal lock");
        g.bytes += ops_bytes(&ops);
        g.writes.push_back(ops);
        // Bounded: the oldest writes go first (a standby that needed them is copied again).
        while g.writes.len() > JOURNAL_WRITES_MAX || g.bytes > JOURNAL_BYTES_MAX {
            let Some(old) = g.writes.pop_front() else {
                break;
            };
            g.bytes -= ops_bytes(&old);
            g.first += 1;
        }
        drop(g);
        self.wake.notify_all();
    }
}

/// What the leader's request layer, its commit gate and its shipper share about the stream.
pub struct LocalLink {
    pub journal: Arc<Journal>,
    /// Every write before this sequence number may be answered.
    released: tokio::sync::watch::Sender<u64>,
    /// The standby's position as it last answered (`None`: unknown).
    standby: Mutex<Option<LocalPosition>>,
    /// How long a request waits for its records to be released.
    wait_max: Duration,
    stopped: AtomicBool,
}

/// What the leader shows of the stream at `GET /v1/ha/status`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalStatus {
    pub journal_next: u64,
    pub released: u64,
    pub standby: Option<LocalPosition>,
}

impl LocalLink {
    pub fn new(journal: Arc<Journal>, wait_max: Duration) -> Arc<LocalLink> {
        let (released, _) = tokio::sync::watch::channel(0);
        Arc::new(LocalLink {
            journal,
            released,
            standby: Mutex::new(None),
            wait_max,
            stopped: AtomicBool::new(false),
        })
    }

    /// Every write before this sequence number may be answered.
    pub fn released(&self) -> u64 {
        *self.released.borrow()
    }

    fn release(&self, upto: u64) {
        self.released.send_if_modified(|r| {
            if upto > *r {
                *r = upto;
                true
            } else {
                false
            }
        });
    }

    fn standby(&self) -> Option<LocalPosition> {
        *self.standby.lock().expect("standby position lock")
    }

    fn set_standby(&self, p: Option<LocalPosition>) {
        *self.standby.lock().expect("standby position lock") = p;
    }

    /// Whether the standby's copy allows listing it in sync: of this generation, complete,
    /// and holding every released write. Asked under the commit gate, which alone lists it.
    pub fn standby_may_be_in_sync(&self) -> bool {
        self.standby()
            .is_some_and(|p| p.gen == self.journal.gen && p.complete && p.next >= self.released())
    }

    pub fn status(&self) -> LocalStatus {
        LocalStatus {
            journal_next: self.journal.next(),
            released: self.released(),
            standby: self.standby(),
        }
    }

    /// Ends the shipper.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.journal.wake.notify_all();
    }

    /// Waits until every write before `upto` is released; `false` after `wait_max`.
    async fn wait_released(&self, upto: u64) -> bool {
        let mut rx = self.released.subscribe();
        tokio::time::timeout(self.wait_max, rx.wait_for(|r| *r >= upto))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The leader's request layer: a request during which node-local records were written is
/// answered once they are released (on the standby, or the standby left the in-sync set).
pub async fn hold_until_replicated(
    State(link): State<Arc<LocalLink>>,
    req: Request,
    next: Next,
) -> Response {
    let before = link.journal.next();
    let response = next.run(req).await;
    let after = link.journal.next();
    if after == before || link.released() >= after || link.wait_released(after).await {
        return response;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotReady,
        "the write is stored on this node but its standby did not confirm it in time; retry",
    )
    .into_response()
}

/// Sends the journal to the standby, copies the records to a standby that needs it, and
/// releases writes: on a thread of its own ([`Shipper::spawn`]) until [`LocalLink::stop`],
/// and from the commit gate when a batch finds the standby's copy behind
/// ([`Shipper::try_sync`]); one round at a time.
pub struct Shipper {
    pub link: Arc<LocalLink>,
    pub store: Store,
    pub key: SigningKey,
    pub peer_url: String,
    pub http: reqwest::Client,
    pub rt: tokio::runtime::Handle,
    /// How long one body may take, and how long a write may wait for the standby before
    /// it is dropped from the in-sync set.
    pub timeout: Duration,
    pub state: Mutex<ShipState>,
}

/// The shipper's progress.
#[derive(Default)]
pub struct ShipState {
    copy: Option<Copy>,
    /// When the standby last failed to answer.
    last_failure: Option<Instant>,
}

/// A copy under way: the journal sequence it began at, the next key to send, and whether it
/// takes more than one page (then only the shipper's thread continues it).
struct Copy {
    start: u64,
    cursor: Vec<u8>,
    long: bool,
}

/// What one round did.
enum Sent {
    Nothing,
    Answered(LocalPosition),
}

impl Shipper {
    /// Starts the shipper's thread; `fence` is the commit gate it removes a failing standby
    /// from the in-sync set through.
    pub fn spawn(self: &Arc<Self>, fence: Arc<Mutex<Fence>>) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("ha-local".into())
            .spawn(move || me.run(&fence))
            .expect("spawn the node-local records shipper")
    }

    fn failing(st: &ShipState) -> bool {
        st.last_failure
            .is_some_and(|t| t.elapsed() < RETRY_INTERVAL)
    }

    /// One round: journaled writes to a standby whose copy is current, a page of the copy to
    /// one that needs it, or a probe of a standby whose position is unknown.
    fn step(&self, st: &mut ShipState) -> Result<Sent, String> {
        let gen = self.link.journal.gen;
        let standby = self.link.standby();
        let normal = standby
            .is_some_and(|p| p.gen == gen && p.complete && p.next >= self.link.journal.first());
        let round = if normal {
            st.copy = None;
            self.send_ops(gen, standby.map_or(0, |p| p.next))
        } else if standby.is_none() {
            self.probe()
        } else {
            self.send_page(gen, &mut st.copy)
        };
        match &round {
            Ok(Sent::Nothing) => {}
            Ok(Sent::Answered(p)) => {
                st.last_failure = None;
                self.link.set_standby(Some(*p));
                if p.gen == gen && p.complete {
                    self.link.release(p.next);
                    self.link.journal.trim_below(p.next);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "node-local records: the standby did not take them");
                st.last_failure = Some(Instant::now());
                self.link.set_standby(None);
                st.copy = None;
            }
        }
        round
    }

    /// From the commit gate: brings a standby whose copy is behind up to date when that takes
    /// a few rounds (a probe, a one-page copy, the journal); whether its copy now allows
    /// listing it in sync. A long copy is left to the shipper's thread.
    pub fn try_sync(&self) -> bool {
        let mut st = self.state.lock().expect("shipper lock");
        for _ in 0..4 {
            if self.link.standby_may_be_in_sync() {
                return true;
            }
            // (Paced by the gate, which tries a standby that failed at most every
            // PROBE_INTERVAL, as it does with batches.)
            if st.copy.as_ref().is_some_and(|c| c.long) {
                return false;
            }
            match self.step(&mut st) {
                Ok(Sent::Answered(_)) => {}
                Ok(Sent::Nothing) | Err(_) => break,
            }
        }
        self.link.standby_may_be_in_sync()
    }

    fn run(&self, fence: &Mutex<Fence>) {
        let mut pending_since: Option<Instant> = None;
        while !self.link.stopped.load(Ordering::Acquire) {
            let next = self.link.journal.next();
            let standby = self.link.standby();
            let caught_up = standby
                .is_some_and(|p| p.gen == self.link.journal.gen && p.complete && p.next >= next);
            let (failing, idle) = {
                let mut st = self.state.lock().expect("shipper lock");
                let idle = caught_up
                    || Self::failing(&st)
                    || matches!(self.step(&mut st), Ok(Sent::Nothing));
                (Self::failing(&st), idle)
            };
            // Writes not yet released: at once while the standby is not listed in sync; else
            // once it holds them, or after it failed or kept them waiting too long, once it
            // was removed from the in-sync set.
            if self.link.released() < self.link.journal.next() {
                let since = *pending_since.get_or_insert_with(Instant::now);
                self.release_alone_or_drop(fence, failing || since.elapsed() > self.timeout);
            }
            if self.link.released() >= self.link.journal.next() {
                pending_since = None;
            }
            if idle {
                self.link.journal.wait_beyond(next, RETRY_INTERVAL / 5);
            }
        }
    }

    /// Releases the journal when the standby is not listed in sync; with `drop`, first
    /// removes it from the in-sync set when it is.
    fn release_alone_or_drop(&self, fence: &Mutex<Fence>, drop: bool) {
        let mut f = fence.lock().expect("fence lock");
        if f.is_fenced() {
            return;
        }
        if f.lists_peer() {
            if !drop {
                return;
            }
            if let Err(e) = f.drop_standby("it did not take node-local records in time") {
                tracing::error!(error = %e, "this node can no longer commit");
                return;
            }
        }
        // Read under the gate: the standby is listed again only by the gate, and only once it
        // holds everything released.
        self.link.release(self.link.journal.next());
    }

    fn post(&self, body: &LocalBody) -> Result<Sent, String> {
        let bytes = body.encode(&self.key);
        let req = self
            .http
            .post(format!("{}{LOCAL_PATH}", self.peer_url))
            .timeout(self.timeout)
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.rt.block_on(async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let p: Option<LocalPosition> = r.json().await.map_err(|e| e.to_string())?;
            match (status.is_success() || status == StatusCode::CONFLICT, p) {
                (true, Some(p)) => Ok(Sent::Answered(p)),
                (true, None) => Err("the standby holds no node-local records yet".into()),
                (false, _) => Err(format!("HTTP {status}")),
            }
        })
    }

    fn probe(&self) -> Result<Sent, String> {
        let req = self
            .http
            .get(format!("{}{LOCAL_PATH}", self.peer_url))
            .timeout(self.timeout);
        let p: Option<LocalPosition> = self.rt.block_on(async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("HTTP {}", r.status()));
            }
            r.json().await.map_err(|e| e.to_string())
        })?;
        // A standby that holds nothing yet is copied: an impossible position says so.
        Ok(Sent::Answered(p.unwrap_or(LocalPosition {
            gen: i64::MIN,
            next: 0,
            complete: false,
        })))
    }

    fn send_ops(&self, gen: i64, from: u64) -> Result<Sent, String> {
        let Some(writes) = self.link.journal.from(from, BODY_RECORD_BYTES_MAX) else {
            return Ok(Sent::Nothing);
        };
        if writes.is_empty() {
            return Ok(Sent::Nothing);
        }
        self.post(&LocalBody::Ops { gen, from, writes })
    }

    fn send_page(&self, gen: i64, copy: &mut Option<Copy>) -> Result<Sent, String> {
        if copy
            .as_ref()
            .is_some_and(|c| c.start < self.link.journal.first())
        {
            // The journal no longer holds where this copy began: begin again.
            *copy = None;
        }
        let c = copy.get_or_insert_with(|| {
            let start = self.link.journal.next();
            tracing::info!(start, "copying the node-local records to the standby");
            Copy {
                start,
                cursor: Vec::new(),
                long: false,
            }
        });
        let scanned = self
            .store
            .local_scan_from(b"", &c.cursor, PAGE_RECORDS_MAX)
            .map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut to = None;
        for (i, (k, v)) in scanned.iter().enumerate() {
            if bytes > BODY_RECORD_BYTES_MAX {
                to = Some(k.clone());
                break;
            }
            if i + 1 == PAGE_RECORDS_MAX {
                let mut after = k.clone();
                after.push(0);
                to = Some(after);
            }
            if replicated(k) {
                bytes += k.len() + v.len();
                records.push((k.clone(), v.clone()));
            }
        }
        let body = LocalBody::Page {
            gen,
            start: c.start,
            from: c.cursor.clone(),
            to: to.clone(),
            records,
        };
        let sent = self.post(&body)?;
        if let Sent::Answered(p) = &sent {
            let expected = LocalPosition {
                gen,
                next: c.start,
                complete: to.is_none(),
            };
            if *p != expected {
                return Err(format!("the standby answered {p:?} to a page of the copy"));
            }
            match to {
                Some(t) => {
                    c.cursor = t;
                    c.long = true;
                }
                None => {
                    tracing::info!(
                        start = c.start,
                        "the standby holds a copy of the node-local records"
                    );
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_replicated_writes_in_order_within_its_bounds() {
        let j = Journal::new(4);
        j.written(&[(b"ha/staged".to_vec(), Some(b"x".to_vec()))]);
        assert_eq!(j.next(), 0, "records of ha/ stay on their node");
        j.written(&[
            (b"apikey/a".to_vec(), Some(b"1".to_vec())),
            (b"mirror/target".to_vec(), None),
        ]);
        j.written(&[(b"apikey/a".to_vec(), None)]);
        assert_eq!(j.next(), 2);
        let w = j.from(0, usize::MAX).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], vec![(b"apikey/a".to_vec(), Some(b"1".to_vec()))]);
        assert_eq!(w[1], vec![(b"apikey/a".to_vec(), None)]);
        // At least one write per body, however large.
        assert_eq!(j.from(0, 1).unwrap().len(), 1);
        j.trim_below(1);
        assert!(
            j.from(0, usize::MAX).is_none(),
            "trimmed: a standby there is copied"
        );
        assert_eq!(j.from(1, usize::MAX).unwrap().len(), 1);
        // Bounded: the oldest writes go first.
        for i in 0..JOURNAL_WRITES_MAX + 10 {
            j.written(&[(format!("apikey/{i}").into_bytes(), Some(Vec::new()))]);
        }
        assert_eq!(j.next(), 2 + JOURNAL_WRITES_MAX as u64 + 10);
        assert_eq!(j.first(), j.next() - JOURNAL_WRITES_MAX as u64);
        assert!(j.from(1, usize::MAX).is_none());
    }
}
