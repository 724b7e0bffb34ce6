//! The coordination store on a real etcd (Debian's `etcd-server`, `./x setup test`): the
//! compare-and-swap that moves the committed head fails for a leader that was replaced, even
//! with the head's current version, and only one node leads at a time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node::ha::etcd::EtcdLock;
use node::ha::lock::{Head, LeaderInfo, LockBackend, LockError};

struct Etcd {
    child: Child,
    url: String,
    bin: String,
    dir: tempfile::TempDir,
    starts: u32,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two free loopback ports, distinct: both are held until both are chosen.
fn ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn etcd() -> Etcd {
    let bin = std::env::var("LOYALTY_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
    assert!(
        std::path::Path::new(&bin).is_file(),
        "no etcd at {bin}: install Debian's etcd-server (`./x setup test`) or set LOYALTY_ETCD"
    );
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn(&bin, dir.path(), 1);
    Etcd {
        child,
        url,
        bin,
        dir,
        starts: 1,
    }
}

/// Starts etcd (start number `n`) on fresh ports, its log in `dir`.
fn spawn(bin: &str, dir: &std::path::Path, n: u32) -> (Child, String) {
    let (c, p) = ports();
    let url = format!("http://127.0.0.1:{c}");
    let peer = format!("http://127.0.0.1:{p}");
    let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd's log file");
    let child = Command::new(bin)
        .args(["--name", "e0", "--data-dir"])
        .arg(dir.join(format!("e{n}")))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("e0={peer}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn etcd");
    (child, url)
}

impl Etcd {
    /// The end of etcd's log, for a failure's message.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        log[log.len().saturating_sub(2_000)..].to_owned()
    }
}

/// A lock on `e`, once it answers. An etcd that exited (a port taken between choosing and
/// binding it) is started again on other ports, at most twice.
async fn connect(e: &mut Etcd) -> EtcdLock {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(l) = EtcdLock::connect(std::slice::from_ref(&e.url), "/test/air").await {
            if l.fetch().await.is_ok() {
                return l;
            }
        }
        if let Ok(Some(status)) = e.child.try_wait() {
            assert!(
                e.starts < 3,
                "etcd exited ({status}) {} times: {}",
                e.starts,
                e.log()
            );
            e.starts += 1;
            (e.child, e.url) = spawn(&e.bin, e.dir.path(), e.starts);
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {} did not answer in 60 s: {}",
            e.url,
            e.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn me(name: &str) -> LeaderInfo {
    LeaderInfo {
        name: name.into(),
        url: format!("http://{name}"),
        epoch: 0,
    }
}

fn head(epoch: i64, leader: &str, size: u64, in_sync: &[&str]) -> Head {
    Head {
        epoch,
        leader: leader.into(),
        size,
        root: format!("{size:064x}"),
        in_sync: in_sync.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leader_can_never_move_the_head() {
    let mut e = etcd();
    let lock = connect(&mut e).await;
    assert_eq!(lock.fetch().await.unwrap(), None);

    // a leads; b cannot while a's lease lives.
    let a = lock.campaign(&me("a"), 2).await.unwrap().expect("a leads");
    assert!(lock.campaign(&me("b"), 2).await.unwrap().is_none());
    let leader = lock.leader().await.unwrap().unwrap();
    assert_eq!((leader.name.as_str(), leader.epoch), ("a", a.epoch));

    // a records heads by compare-and-swap; a stale version is refused.
    let h1 = lock
        .create(&a, &head(a.epoch, "a", 1, &["a", "b"]))
        .await
        .unwrap();
    assert_eq!(
        lock.create(&a, &head(a.epoch, "a", 1, &["a"])).await,
        Err(LockError::Conflict),
        "a head exists already"
    );
    let h2 = lock
        .replace(&a, &h1, &head(a.epoch, "a", 2, &["a", "b"]))
        .await
        .unwrap();
    assert_eq!(
        lock.replace(&a, &h1, &head(a.epoch, "a", 3, &["a"])).await,
        Err(LockError::Conflict),
        "the head moved since h1"
    );

    // a's lease ends (here: resigned; a paused process's lease expires the same way); b leads.
    lock.resign(&a).await.unwrap();
    assert!(a.is_lost());
    let b = lock.campaign(&me("b"), 2).await.unwrap().expect("b leads");
    assert!(b.epoch > a.epoch);
    // Even with the head's current version, a's compare now fails: it can never publish.
    assert_eq!(
        lock.replace(&a, &h2, &head(a.epoch, "a", 3, &["a"])).await,
        Err(LockError::Conflict)
    );
    let h3 = lock
        .replace(&b, &h2, &head(b.epoch, "b", 2, &["b"]))
        .await
        .unwrap();
    assert_eq!(lock.fetch().await.unwrap().unwrap(), h3);

    // A manual switchover request is visible until cleared.
    lock.request_switchover(Some("a")).await.unwrap();
    assert_eq!(lock.switchover().await.unwrap().as_deref(), Some("a"));
    lock.request_switchover(None).await.unwrap();
    assert_eq!(lock.switchover().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_kept_alive_outlives_its_time_to_live_and_ends_when_resigned() {
    let mut e = etcd();
    let lock = connect(&mut e).await;
    let a = lock.campaign(&me("a"), 1).await.unwrap().expect("a leads");
    // Kept alive in the background past several times its time to live.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(!a.is_lost());
    assert_eq!(lock.leader().await.unwrap().unwrap().name, "a");
    lock.resign(&a).await.unwrap();
    assert_eq!(lock.leader().await.unwrap(), None);
}
