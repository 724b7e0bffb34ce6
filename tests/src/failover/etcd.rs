//! A three-member etcd cluster on loopback ports it picks, in a temporary directory, for the
//! failover tests: members can be killed (-9) and restarted on their data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, wait_until};

/// Environment variable naming the etcd binary (default `/usr/bin/etcd`, Debian's
/// `etcd-server`, which `./x setup test` installs).
pub const ETCD_BIN_ENV: &str = "LOYALTY_ETCD";

/// The etcd binary.
pub fn etcd_bin() -> PathBuf {
    let bin = std::env::var_os(ETCD_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        bin.is_file(),
        "no etcd at {}: install Debian's etcd-server (`./x setup test`) or set {ETCD_BIN_ENV}",
        bin.display()
    );
    bin
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed when it is dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster is healthy.
    pub async fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("e{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                dir: dir.path().join(format!("e{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members,
            initial_cluster,
            dir,
        };
        for i in 0..n {
            c.spawn(i, "new");
        }
        c.wait_healthy().await;
        c
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("e{i}.log")))
            .expect("open the etcd log");
        let m = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_bin())
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "loyalty-failover"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        m.child = Some(child);
    }

    /// The client endpoints of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// SIGKILL member `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` on its data and waits until the cluster is healthy again.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "e{i} is running");
        self.spawn(i, "existing");
        self.wait_healthy().await;
    }

    /// Waits until every running member reports itself healthy (it sees a quorum).
    pub async fn wait_healthy(&self) {
        let http = reqwest::Client::new();
        let urls: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}/health", m.client_port))
            .collect();
        wait_until("etcd is healthy", Duration::from_secs(30), || {
            let (http, urls) = (http.clone(), urls.clone());
            async move {
                for u in &urls {
                    let ok = match http.get(u).timeout(Duration::from_secs(1)).send().await {
                        Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
                        Err(_) => false,
                    };
                    if !ok {
                        return Err(format!("{u} is not healthy"));
                    }
                }
                Ok(())
            }
        })
        .await;
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
