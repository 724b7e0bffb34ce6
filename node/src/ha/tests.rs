//! The commit point and the standby's log, against the in-memory lock backend and real stores.

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind};
use ledger::types::{LogTime, Points};
use ledger_store::log::{CommitGate, Log, LogError, Prepared, Write};

use super::commit::{CommitStatus, Fence, GUARD_PASSED};
use super::lock::{Head, LeaderInfo, Lease, LockBackend, Locked, MemoryLock};
use super::standby::{ReceiveError, StandbyLog};
use super::ReplicateBody;

const ORIGIN: &str = "loyalty.example/a";

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap()
}

fn earns(from: usize, n: usize) -> Vec<Write> {
    (from..from + n)
        .map(|i| Write {
            id: format!("w{i}").parse().unwrap(),
            kind: EntryKind::Earn(Earn {
                member: format!("m{}", i % 3).parse().unwrap(),
                points: Points::new(10 + i as u64).unwrap(),
                qualifying: true,
            }),
        })
        .collect()
}

fn at(ms: u64) -> LogTime {
    LogTime::new(1_700_000_000_000 + ms).unwrap()
}

/// A gate that keeps what a standby would be shipped.
#[derive(Default)]
struct Capture(Vec<ReplicateBody>);

impl CommitGate for Capture {
    fn before_commit(&mut self, p: &Prepared<'_>) -> Result<(), String> {
        self.0.push(ReplicateBody {
            epoch: 1,
            start: p.start,
            entries: p.entries.iter().map(|(_, b)| b.clone()).collect(),
            note: p.note.clone(),
        });
        Ok(())
    }
    fn after_commit(&mut self, _: &Prepared<'_>) -> Result<(), String> {
        Ok(())
    }
}

fn standby(dir: &std::path::Path) -> StandbyLog {
    StandbyLog::open(dir, signer().verifier(), Default::default()).unwrap()
}

#[test]
fn a_staged_batch_is_applied_only_once_it_is_known_committed() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open(a.path(), signer()).unwrap();
    let mut shipped = Capture::default();
    log.append_with(&earns(0, 5), at(1), &mut shipped).unwrap();
    log.append_with(&earns(5, 3), at(2), &mut shipped).unwrap();
    let mut s = standby(b.path());

    let first = s.receive(&shipped.0[0]).unwrap();
    assert_eq!((first.size, first.staged_end), (0, Some(5)));
    assert_eq!(
        s.shared().checkpoint().size,
        0,
        "a staged batch is not served"
    );
    // The next signed batch proves the first committed: that is recorded with the second
    // staged, in one synced write, and the first is applied after the answer.
    let second = s.receive(&shipped.0[1]).unwrap();
    assert_eq!((second.size, second.staged_end), (0, Some(8)));
    // A crash before it is applied: the restarted standby applies it at open. Acknowledged
    // means durable: the staged batch survives too.
    drop(s);
    let mut s = standby(b.path());
    assert_eq!((s.size(), s.staged_end()), (5, Some(8)));
    assert_eq!(s.shared().checkpoint().size, 5);
    // The committed head covers it exactly: applied.
    let root = hex::encode(log.checkpoint().root);
    s.settle(8, &root).unwrap();
    assert_eq!((s.size(), s.staged_end()), (8, None));
    assert_eq!(s.shared().checkpoint().note, log.checkpoint_note());
    drop(s);
    // The standby's store is the brand's log: it opens for writing and replays to the same.
    let standby_log = Log::open(b.path(), signer()).unwrap();
    assert_eq!(standby_log.size(), 8);
    assert_eq!(standby_log.checkpoint_note(), log.checkpoint_note());
    standby_log.verify_replay().unwrap();
}

#[test]
fn a_staged_batch_the_committed_head_does_not_cover_is_dropped() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open(a.path(), signer()).unwrap();
    let mut shipped = Capture::default();
    log.append_with(&earns(0, 4), at(1), &mut shipped).unwrap();
    let mut s = standby(b.path());
    s.receive(&shipped.0[0]).unwrap();
    let empty = hex::encode(ledger::merkle::empty_root());
    s.settle(0, &empty).unwrap();
    assert_eq!((s.size(), s.staged_end()), (0, None));
    drop(s);
    assert_eq!(standby(b.path()).staged_end(), None);
}

#[test]
fn a_batch_that_is_not_what_the_key_signed_or_not_in_place_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open(a.path(), signer()).unwrap();
    let mut shipped = Capture::default();
    log.append_with(&earns(0, 4), at(1), &mut shipped).unwrap();
    log.append_with(&earns(4, 4), at(2), &mut shipped).unwrap();
    let mut s = standby(b.path());
    // Out of place: the standby holds nothing, the batch starts at 4.
    assert!(matches!(
        s.receive(&shipped.0[1]),
        Err(ReceiveError::Position { start: 4, size: 0 })
    ));
    // Tampered entry under an honest note.
    let mut bad = shipped.0[0].clone();
    bad.entries[1] = String::from_utf8(bad.entries[1].clone())
        .unwrap()
        .replace("\"m1\"", "\"m2\"")
        .into_bytes();
    assert!(matches!(s.receive(&bad), Err(ReceiveError::Invalid(_))));
    // A note signed by another key.
    let other = NoteSigner::from_seed(ORIGIN, &[8; 32]).unwrap();
    let mut forged = shipped.0[0].clone();
    let cp = ledger::checkpoint::Checkpoint {
        origin: ORIGIN.into(),
        size: 4,
        root: log.checkpoint().root,
        extensions: vec![],
    };
    forged.note = ledger::checkpoint::sign_checkpoint(&cp, &other)
        .unwrap()
        .to_string();
    assert!(matches!(s.receive(&forged), Err(ReceiveError::Invalid(_))));
    assert_eq!((s.size(), s.staged_end()), (0, None));
}

fn ha_config(peer_url: &str) -> crate::config::Ha {
    crate::config::Ha {
        name: "a".into(),
        etcd: vec!["http://127.0.0.1:1".into()],
        prefix: String::new(),
        peer_name: "b".into(),
        peer_url: peer_url.into(),
        lease_ttl_s: 1,
        replicate_timeout_ms: 2_000,
        standby_of: None,
        guard_quorum: 0,
    }
}

struct Leader {
    rt: tokio::runtime::Runtime,
    lock: MemoryLock,
    lease: Lease,
    locked: Locked,
}

fn leader(log: &Log) -> Leader {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lock = MemoryLock::default();
    let me = LeaderInfo {
        name: "a".into(),
        url: "http://a".into(),
        epoch: 0,
    };
    let lease = rt.block_on(lock.campaign(&me, 1)).unwrap().unwrap();
    let head = Head {
        epoch: lease.epoch,
        leader: "a".into(),
        size: log.size(),
        root: hex::encode(log.checkpoint().root),
        in_sync: vec!["a".into()],
    };
    let locked = rt.block_on(lock.create(&lease, &head)).unwrap();
    Leader {
        rt,
        lock,
        lease,
        locked,
    }
}

fn fence(l: &Leader, log: &Log, peer_url: &str) -> (Fence, Arc<Mutex<CommitStatus>>) {
    let status = Arc::new(Mutex::new(CommitStatus::default()));
    let f = Fence::new(
        Arc::new(l.lock.clone()),
        l.lease.clone(),
        l.locked.clone(),
        &ha_config(peer_url),
        l.rt.handle().clone(),
        log.store().clone(),
        Arc::new(AtomicU8::new(GUARD_PASSED)),
        status.clone(),
        Arc::new(crate::metrics::Metrics::new()),
    );
    (f, status)
}

#[test]
fn a_commit_moves_the_head_and_a_fenced_leader_stores_nothing() {
    let a = tempfile::tempdir().unwrap();
    let mut log = Log::open(a.path(), signer()).unwrap();
    let l = leader(&log);
    // No standby answers: the node commits alone, the head follows each batch.
    let (mut gate, status) = fence(&l, &log, "http://127.0.0.1:9");
    log.append_with(&earns(0, 3), at(1), &mut gate).unwrap();
    let head = l.lock.history().last().cloned().unwrap();
    assert_eq!((head.size, head.in_sync.clone()), (3, vec!["a".to_owned()]));
    assert_eq!(head.root, hex::encode(log.checkpoint().root));
    assert_eq!(status.lock().unwrap().batches_alone, 1);

    // The lease runs out (a pause, a partition); another node takes the leadership.
    l.lock.expire();
    let other = LeaderInfo {
        name: "b".into(),
        url: "http://b".into(),
        epoch: 0,
    };
    let lease_b = l.rt.block_on(l.lock.campaign(&other, 1)).unwrap().unwrap();
    let now = l.rt.block_on(l.lock.fetch()).unwrap().unwrap();
    let mut taken = now.head.clone();
    taken.leader = "b".into();
    taken.epoch = lease_b.epoch;
    l.rt.block_on(l.lock.replace(&lease_b, &now, &taken))
        .unwrap();

    let note_before = log.checkpoint_note().to_owned();
    let err = log.append_with(&earns(3, 2), at(2), &mut gate).unwrap_err();
    assert!(matches!(err, LogError::Fenced(_)), "{err}");
    assert!(status.lock().unwrap().fenced.is_some());
    // Nothing of the fenced batch is stored, nothing signed into the store.
    drop(gate);
    drop(log);
    let log = Log::open(a.path(), signer()).unwrap();
    assert_eq!(log.size(), 3);
    assert_eq!(log.checkpoint_note(), note_before);
    assert_eq!(l.lock.history().last().unwrap().leader, "b");
}

/// A standby on loopback answering the replication route from a [`StandbyLog`]; it answers
/// 503 once the returned flag is set (a dead standby).
fn serve_standby(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> (
    String,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<Mutex<StandbyLog>>,
) {
    use axum::response::IntoResponse;
    use axum::routing::post;
    let s = Arc::new(Mutex::new(standby(dir)));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, down2) = (s.clone(), down.clone());
    let router = axum::Router::new().route(
        super::REPLICATE_PATH,
        post(move |b: axum::body::Bytes| {
            let (s, down) = (s2.clone(), down2.clone());
            async move {
                let b = ReplicateBody::decode(&b).unwrap();
                if down.load(std::sync::atomic::Ordering::Acquire) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let mut s = s.lock().unwrap();
                match s.receive(&b) {
                    Ok(a) => {
                        s.apply_proven().unwrap();
                        axum::Json(a).into_response()
                    }
                    Err(_) => {
                        (axum::http::StatusCode::CONFLICT, axum::Json(s.position())).into_response()
                    }
                }
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, down, s)
}

#[test]
fn a_batch_is_committed_with_the_standby_in_sync_only_once_it_holds_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = Log::open(a.path(), signer()).unwrap();
    let l = leader(&log);
    let (url, down, s) = serve_standby(&l.rt, b.path());
    let (mut gate, status) = fence(&l, &log, &url);
    log.append_with(&earns(0, 3), at(1), &mut gate).unwrap();
    log.append_with(&earns(3, 3), at(2), &mut gate).unwrap();
    let heads = l.lock.history();
    let last = heads.last().unwrap();
    assert_eq!(last.size, 6);
    assert_eq!(last.in_sync, vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(status.lock().unwrap().batches_replicated, 2);
    // The standby holds the first batch applied and the second staged, durably.
    {
        let s = s.lock().unwrap();
        assert_eq!((s.size(), s.staged_end()), (3, Some(6)));
    }

    // The standby dies: the next commit first removes it from the in-sync set (head
    // unchanged), then records the new head with the primary alone.
    down.store(true, std::sync::atomic::Ordering::Release);
    log.append_with(&earns(6, 2), at(3), &mut gate).unwrap();
    let heads = l.lock.history();
    let n = heads.len();
    assert_eq!(
        (heads[n - 2].size, heads[n - 2].in_sync.clone()),
        (6, vec!["a".to_owned()])
    );
    assert_eq!(
        (heads[n - 1].size, heads[n - 1].in_sync.clone()),
        (8, vec!["a".to_owned()])
    );
}

#[test]
fn a_replication_body_reads_back_and_a_damaged_one_is_refused() {
    let body = ReplicateBody {
        epoch: 3,
        start: 10,
        entries: vec![b"{\"a\":1}".to_vec(), vec![0xff, 0, 1]],
        note: "origin\n12\nroot\n".into(),
    };
    let bytes = body.encode();
    assert_eq!(ReplicateBody::decode(&bytes).unwrap(), body);
    for cut in [0, 3, 4, 20, bytes.len() - 1] {
        assert!(
            ReplicateBody::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(ReplicateBody::decode(&longer).is_err());
}

#[test]
fn node_local_bodies_are_applied_only_signed_and_in_place() {
    use super::local::{body_key, LocalBody, LocalPosition, LocalReplica};
    let dir = tempfile::tempdir().unwrap();
    let store = ledger_store::store::Store::open(dir.path()).unwrap();
    let key = body_key(&[7; 32]);
    let replica = LocalReplica::open(store.clone(), key.verifying_key()).unwrap();
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    // Nothing held yet: journaled writes are out of place.
    let ops = LocalBody::Ops {
        gen: 5,
        from: 0,
        writes: vec![vec![put("apikey/a", "1")]],
    };
    assert!(replica.apply(&ops.encode(&key)).is_err());
    store.local_put(b"apikey/stale", b"x").unwrap();
    store.local_put(b"ha/staged", b"mine").unwrap();
    // A copy in two pages: the stale key in the first page's range goes, ha/ stays.
    let page = |from: &str, to: Option<&str>, records: Vec<(&str, &str)>| LocalBody::Page {
        gen: 5,
        start: 0,
        from: from.as_bytes().to_vec(),
        to: to.map(|t| t.as_bytes().to_vec()),
        records: records
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    };
    let first = page("", Some("b"), vec![("apikey/a", "1")]);
    let p = replica.apply(&first.encode(&key)).unwrap().unwrap();
    assert_eq!((p.gen, p.next, p.complete), (5, 0, false));
    assert_eq!(store.local_get(b"apikey/stale").unwrap(), None);
    // Signed by another key: refused.
    let last = page("b", None, vec![("partner/coffee", "pin")]);
    assert!(replica.apply(&last.encode(&body_key(&[8; 32]))).is_err());
    let p = replica.apply(&last.encode(&key)).unwrap().unwrap();
    assert!(p.complete);
    assert_eq!(store.local_get(b"ha/staged").unwrap().unwrap(), b"mine");
    // Then the journal from where the copy began, a write twice is applied once.
    let ops = LocalBody::Ops {
        gen: 5,
        from: 0,
        writes: vec![
            vec![put("apikey/b", "2")],
            vec![(b"apikey/a".to_vec(), None)],
        ],
    };
    assert_eq!(
        replica.apply(&ops.encode(&key)).unwrap(),
        Some(LocalPosition {
            gen: 5,
            next: 2,
            complete: true
        })
    );
    assert!(replica.apply(&ops.encode(&key)).unwrap().is_some());
    assert_eq!(store.local_get(b"apikey/a").unwrap(), None);
    assert_eq!(store.local_get(b"apikey/b").unwrap().unwrap(), b"2");
    // A replayed first page of the same generation behind the position is refused.
    assert!(replica.apply(&first.encode(&key)).is_err());
    // The position survives a restart.
    drop(replica);
    let replica = LocalReplica::open(store, key.verifying_key()).unwrap();
    assert_eq!(replica.position().map(|p| p.next), Some(2));
}
