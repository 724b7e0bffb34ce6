//! The demo's nodes as child processes of this binary: `init` (its output parsed for the
//! verifier key and the admin key), `run` with the demo's environment, readiness, SIGTERM.
//!
//! Invariants: every wait is bounded; a node is started with no `LOYALTY_*` variable of the
//! caller's environment, in its own process group (Ctrl-C reaches the demo, which stops each
//! node); a node still running when its [`DemoNode`] is dropped gets SIGTERM, then SIGKILL after
//! [`STOP_TIMEOUT`].

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use ledger::checkpoint::NoteVerifier;

use super::{BrandSpec, REQUEST_TIMEOUT};

/// How long a started node has to answer `/readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node has to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `init` may take.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Sync and witness rounds of the demo's nodes: faster than the defaults, so that partners see
/// each other's entries within a fraction of a second.
const FAST_FEDERATION: &[(&str, &str)] = &[
    ("LOYALTY_SYNC_INTERVAL_MS", "200"),
    ("LOYALTY_WITNESS_INTERVAL_MS", "500"),
];

/// A `loyalty-node run` child process of the demo, with what `init` printed for it.
pub struct DemoNode {
    pub spec: &'static BrandSpec,
    pub url: String,
    /// The node's data directory (`<dir>/<brand>`).
    pub data: PathBuf,
    /// The admin API key `init` printed.
    pub admin_key: String,
    /// The node's C2SP verifier key `init` printed.
    pub verifier_key: String,
    /// An SDK client with the admin key, pinned to the node's verifier key.
    pub client: sdk::Client,
    exe: PathBuf,
    workdir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    probe: reqwest::Client,
}

impl DemoNode {
    /// Runs `init` for `spec` in `<dir>/<brand>` with a free loopback port.
    pub fn init(exe: &Path, dir: &Path, spec: &'static BrandSpec, port: u16) -> Result<DemoNode> {
        let data = dir.join(spec.brand);
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(exe);
        cmd.arg("init")
            .arg("--data")
            .arg(&data)
            .args(["--brand", spec.brand, "--listen", &listen])
            .current_dir(dir)
            .stdin(Stdio::null());
        clean_env(&mut cmd);
        let out = output_within(cmd, INIT_TIMEOUT)
            .with_context(|| format!("run `loyalty-node init` for {}", spec.brand))?;
        if !out.status.success() {
            bail!(
                "`loyalty-node init` for {} failed ({}): {}",
                spec.brand,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let printed = |prefix: &str| -> Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.trim().to_owned())
                .with_context(|| format!("`init` of {} printed no {prefix:?}: {text}", spec.brand))
        };
        let verifier_key = printed("verifier key: ")?;
        let admin_key = printed("admin API key (shown once, stored hashed): ")?;
        let verifier = NoteVerifier::parse(&verifier_key)
            .with_context(|| format!("the verifier key `init` printed for {}", spec.brand))?;
        let url = format!("http://{listen}");
        let client = sdk::Client::builder(&url)
            .api_key(admin_key.clone())
            .verifier(verifier)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("an SDK client")?;
        Ok(DemoNode {
            spec,
            url,
            log_path: dir.join(format!("{}.log", spec.brand)),
            data,
            admin_key,
            verifier_key,
            client,
            exe: exe.to_owned(),
            workdir: dir.to_owned(),
            child: None,
            probe: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .context("an HTTP client")?,
        })
    }

    /// The brand id.
    pub fn brand(&self) -> &'static str {
        self.spec.brand
    }

    /// The node's pinned log key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier::parse(&self.verifier_key).expect("checked when the node was initialised")
    }

    /// The file the node's output goes to (appended to by every start).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts `loyalty-node run` on the node's data (with `LOYALTY_FAULT=<fault>` when given)
    /// and waits until it is ready.
    pub async fn start(&mut self, fault: Option<&str>) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.brand());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run")
            .arg("--data")
            .arg(&self.data)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        clean_env(&mut cmd);
        cmd.envs(FAST_FEDERATION.iter().copied());
        // The output goes to a file: no colour codes in it.
        cmd.env("NO_COLOR", "1");
        if let Some(point) = fault {
            cmd.env(node::fault::FAULT_ENV, point);
        }
        // Its own process group: Ctrl-C reaches the demo only, which then stops each node.
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start `loyalty-node run` for {}", self.brand()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.url);
        loop {
            if let Ok(r) = self.probe.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.exited()? {
                bail!(
                    "{} exited before it was ready ({status}); see {}",
                    self.brand(),
                    self.log_path.display()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {READY_TIMEOUT:?}; see {}",
                    self.brand(),
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, once the process has exited (it is then forgotten).
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        let Some(c) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = c.try_wait().context("wait for a node")?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits (at most `limit`) for the process to exit on its own, and returns how it ended.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if self.child.is_none() {
                bail!("{} is not running", self.brand());
            }
            if let Some(s) = self.exited()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {limit:?}", self.brand());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM (the node drains its requests and closes its store), then waits for the exit;
    /// SIGKILL after `STOP_TIMEOUT`. Does nothing when the node is not running.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        terminate(child);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.exited()? {
                if !status.success() {
                    bail!(
                        "{} exited with {status} after SIGTERM; see {}",
                        self.brand(),
                        self.log_path.display()
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed",
                    self.brand()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DemoNode {
    /// A node still running when the demo ends (an error, a panic) is stopped: SIGTERM, then
    /// SIGKILL after `STOP_TIMEOUT`.
    fn drop(&mut self) {
        let Some(c) = self.child.as_mut() else {
            return;
        };
        terminate(c);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_)) | Err(_)) {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Sends SIGTERM to a child (on Unix; elsewhere it is killed).
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if matches!(sent, Ok(s) if s.success()) {
            return;
        }
    }
    let _ = child.kill();
}

/// The demo's nodes start from a known configuration: no `LOYALTY_*` override of the caller's
/// environment reaches them (a stray `LOYALTY_FAULT` or `LOYALTY_LISTEN` would change the
/// scenario).
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOYALTY_") {
            cmd.env_remove(key);
        }
    }
}

/// Runs `cmd` to completion with its output captured, killing it after `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> Result<std::process::Output> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            bail!("did not finish within {limit:?}")
        }
    }
}

/// A free loopback port, distinct from `taken` (the OS picks it; another program may still
/// bind it before the node does, which `start` then reports).
pub fn free_port(taken: &[u16]) -> Result<u16> {
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .context("bind a loopback port")?
            .local_addr()?
            .port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port found")
}
