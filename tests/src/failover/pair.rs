//! One brand served by two `loyalty-node` processes under coordination (a primary and its
//! standby, `[ha]` sections naming each other and the etcd cluster), with the process
//! controls the failover tests need: kill -9, SIGSTOP/SIGCONT, and a supervisor that restarts
//! a node that exited (as systemd's `Restart=always` does in production).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{free_port, http_client, node_bin, wait_until, LOG_TAIL_LINES, NODE_LOG_ENV};

/// Set this variable to keep the nodes' data and logs after the test (the path is printed).
pub const KEEP_ENV: &str = "LOYALTY_FAILOVER_KEEP";

/// Time to live of the leadership lease in the tests, in seconds.
pub const LEASE_TTL_S: u64 = 2;

/// One node of the pair.
pub struct HaNode {
    pub name: String,
    pub data: PathBuf,
    pub url: String,
    pub port: u16,
    log_path: PathBuf,
    child: Option<Child>,
    /// Set while the process is stopped by SIGSTOP.
    pub paused: bool,
    /// Exits observed (and restarted by [`Pair::supervise`]).
    pub exits: Vec<ExitStatus>,
    standby_of: Option<String>,
}

fn parse_init(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("init printed no {prefix:?}: {out}"))
        .trim()
        .to_owned()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

impl HaNode {
    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the node's log");
        let mut cmd = Command::new(node_bin());
        cmd.args(["run", "--data"]).arg(&self.data);
        if let Some(url) = &self.standby_of {
            cmd.args(["--standby-of", url]);
        }
        let child = cmd
            .env(
                "RUST_LOG",
                std::env::var(NODE_LOG_ENV).unwrap_or_else(|_| "warn,node::ha=info".into()),
            )
            .env("LOYALTY_WITNESS_INTERVAL_MS", "200")
            .env("LOYALTY_SYNC_INTERVAL_MS", "100")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn loyalty-node run");
        self.child = Some(child);
        self.paused = false;
    }

    /// Whether the process runs (stopped or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                let _ = c.kill();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP: the process keeps its sockets and its lease record but does nothing.
    pub fn pause(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        signal(pid, "-STOP");
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "-CONT");
        }
        self.paused = false;
    }

    /// Restarts the process when it exited; returns its exit status then.
    pub fn restart_if_exited(&mut self) -> Option<ExitStatus> {
        let exited = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.exits.push(exited);
        self.spawn();
        Some(exited)
    }

    /// Starts the process after a [`HaNode::kill9`].
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs", self.name);
        self.spawn();
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /v1/ha/status`, if the node answers within `limit`.
    pub async fn status(&self, http: &reqwest::Client, limit: Duration) -> Option<Value> {
        let r = http
            .get(format!("{}/v1/ha/status", self.url))
            .timeout(limit)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_ENV).is_some() {
            let dir = std::mem::replace(
                &mut self._dir,
                tempfile::tempdir().expect("a temporary directory"),
            );
            let _ = dir.keep();
        }
    }
}

impl Drop for HaNode {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill9();
    }
}

/// A brand's two nodes.
pub struct Pair {
    pub nodes: [HaNode; 2],
    pub admin_key: String,
    pub verifier_key: String,
    pub brand: String,
    _dir: tempfile::TempDir,
}

fn ha_section(name: &str, peer: &str, peer_url: &str, etcd: &[String]) -> String {
    let endpoints = etcd
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n[ha]\nname = {name:?}\npeer_name = {peer:?}\npeer_url = {peer_url:?}\netcd = [{endpoints}]\nlease_ttl_s = {LEASE_TTL_S}\nreplicate_timeout_ms = 1000\n"
    )
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

impl Pair {
    /// `init`s node `a` of `brand`, copies its data directory (key, config, store) to node
    /// `b` (what an operator does with a backup), gives both an `[ha]` section, and starts `a`
    /// as the primary and `b` as its standby; waits until `a` leads and `b` follows.
    /// `prepare` runs on `a`'s data directory before the copy (e.g. to pin partners).
    pub async fn start(brand: &str, etcd: &[String]) -> Pair {
        let (pa, pb) = (free_port(), free_port());
        let urls = [
            format!("http://127.0.0.1:{pb}"),
            format!("http://127.0.0.1:{pa}"),
        ];
        Pair::start_with(brand, [pa, pb], [etcd.to_vec(), etcd.to_vec()], urls).await
    }

    /// As [`Pair::start`], with the nodes listening on `ports`, each reaching etcd at its own
    /// endpoints and its peer at its own URL (so that a test can put proxies in between).
    pub async fn start_with(
        brand: &str,
        ports: [u16; 2],
        etcd: [Vec<String>; 2],
        peer_urls: [String; 2],
    ) -> Pair {
        let dir = tempfile::tempdir().expect("a temporary directory");
        if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("{KEEP_ENV}: keeping {}", dir.path().display());
        }
        let [pa, pb] = ports;
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        let init = Command::new(node_bin())
            .args(["init", "--data"])
            .arg(&da)
            .args(["--brand", brand, "--listen", &format!("127.0.0.1:{pa}")])
            .output()
            .expect("run loyalty-node init");
        assert!(
            init.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let text = String::from_utf8(init.stdout).expect("UTF-8");
        let admin_key = parse_init(&text, "admin API key (shown once, stored hashed): ");
        let verifier_key = parse_init(&text, "verifier key: ");
        copy_dir(&da, &db);
        let (ua, ub) = (
            format!("http://127.0.0.1:{pa}"),
            format!("http://127.0.0.1:{pb}"),
        );
        let config_b = std::fs::read_to_string(db.join("config.toml"))
            .expect("b's config")
            .replace(&format!("127.0.0.1:{pa}"), &format!("127.0.0.1:{pb}"));
        std::fs::write(
            db.join("config.toml"),
            config_b + &ha_section("b", "a", &peer_urls[1], &etcd[1]),
        )
        .expect("write b's config");
        let config_a = std::fs::read_to_string(da.join("config.toml")).expect("a's config");
        std::fs::write(
            da.join("config.toml"),
            config_a + &ha_section("a", "b", &peer_urls[0], &etcd[0]),
        )
        .expect("write a's config");
        let node = |name: &str, data: PathBuf, port: u16, url: String, standby_of| HaNode {
            name: name.into(),
            log_path: dir.path().join(format!("{name}.log")),
            data,
            url,
            port,
            child: None,
            paused: false,
            exits: Vec::new(),
            standby_of,
        };
        let mut pair = Pair {
            nodes: [
                node("a", da, pa, ua.clone(), None),
                node("b", db, pb, ub, Some(ua)),
            ],
            admin_key,
            verifier_key,
            brand: brand.into(),
            _dir: dir,
        };
        pair.nodes[0].start();
        pair.wait_role(0, "primary", Duration::from_secs(30)).await;
        pair.nodes[1].start();
        pair.wait_role(1, "standby", Duration::from_secs(30)).await;
        pair
    }

    /// Waits until node `i` reports `role`.
    pub async fn wait_role(&self, i: usize, role: &str, limit: Duration) {
        let http = http_client();
        let node = &self.nodes[i];
        let what = format!("{} is {role}", node.name);
        wait_until(&what, limit, || {
            let http = http.clone();
            async move {
                match node.status(&http, Duration::from_secs(1)).await {
                    Some(s) if s["role"] == role => Ok(()),
                    Some(s) => Err(format!("status {s}")),
                    None => Err("no status".into()),
                }
            }
        })
        .await;
    }

    /// The index of the node that reports itself primary with the largest epoch, and its
    /// status.
    pub async fn primary(&self, http: &reqwest::Client) -> Option<(usize, Value)> {
        let mut best: Option<(usize, Value)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.paused || !n.is_running() {
                continue;
            }
            if let Some(s) = n.status(http, Duration::from_millis(500)).await {
                if s["role"] == "primary" && s["fenced"].is_null() {
                    let better = best
                        .as_ref()
                        .is_none_or(|(_, b)| s["epoch"].as_i64() > b["epoch"].as_i64());
                    if better {
                        best = Some((i, s));
                    }
                }
            }
        }
        best
    }

    /// Waits until a primary has its standby in sync, restarting nodes that exit meanwhile
    /// (the supervisor's job); returns the primary's index.
    pub async fn wait_in_sync(&mut self, limit: Duration) -> usize {
        let http = http_client();
        let deadline = std::time::Instant::now() + limit;
        loop {
            self.supervise();
            let last = match self.primary(&http).await {
                Some((i, s)) if s["in_sync"].as_array().is_some_and(|a| a.len() == 2) => return i,
                Some((_, s)) => format!("primary status {s}"),
                None => "no primary".into(),
            };
            assert!(
                std::time::Instant::now() < deadline,
                "no primary with its standby in sync within {limit:?}; last: {last}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Restarts every node that exited (the supervisor's round); returns how many.
    pub fn supervise(&mut self) -> usize {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.restart_if_exited())
            .count()
    }

    /// Both nodes' log tails, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log_tail(LOG_TAIL_LINES)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
