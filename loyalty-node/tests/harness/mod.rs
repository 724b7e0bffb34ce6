//! A small harness that runs real `loyalty-node` processes on loopback: picks ports, makes
//! data directories, waits for readiness, and stops what it started on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `$LOYALTY_NODE_BIN` (e.g. an older build, to show that a test
/// reproduces what it fixes), or else the one cargo built with these tests.
pub fn bin() -> String {
    std::env::var("LOYALTY_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_loyalty-node").into())
}

/// A node process and its data directory.
pub struct Node {
    pub data: PathBuf,
    pub url: String,
    pub admin_key: String,
    pub verifier_key: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// The open-file limit (soft and hard) of the process, when set.
    pub fd_limit: Option<u64>,
}

/// A free loopback port (the OS picks it; a tiny race with other binders is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn parse_init(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("init printed no {prefix:?}: {out}"))
        .trim()
        .to_owned()
}

impl Node {
    /// `init` a fresh node for `brand` in a temp dir and start it.
    pub fn start_new(brand: &str, env: &[(&str, &str)]) -> Node {
        let mut n = Node::init(brand, env);
        n.start();
        n
    }

    /// Like [`Node::start_new`], with the process's open-file limit set to `fd_limit`.
    pub fn start_new_with_fd_limit(brand: &str, env: &[(&str, &str)], fd_limit: u64) -> Node {
        let mut n = Node::init(brand, env);
        n.fd_limit = Some(fd_limit);
        n.start();
        n
    }

    /// `init`s a fresh node in a temp dir without starting it.
    pub fn init(brand: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        let port = free_port();
        let out = Command::new(bin())
            .args(["init", "--data"])
            .arg(&data)
            .args(["--brand", brand, "--listen", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        Node {
            data,
            url: format!("http://127.0.0.1:{port}"),
            admin_key: parse_init(&text, "admin API key (shown once, stored hashed): "),
            verifier_key: parse_init(&text, "verifier key: "),
            child: None,
            _dir: Some(dir),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fd_limit: None,
        }
    }

    /// Runs `loyalty-node run` on this data directory expecting it to refuse to start; returns
    /// its exit status and standard error (bounded: 30 s).
    pub fn run_expecting_refusal(&self) -> (std::process::ExitStatus, String) {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (status, err);
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the node did not refuse to start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--data"]).arg(&self.data);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "warn");
        #[cfg(unix)]
        if let Some(n) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts a node on an existing data directory (e.g. a backup) on a new port.
    pub fn start_existing(data: &Path, verifier_key: &str, admin_key: &str) -> Node {
        let port = free_port();
        let mut n = Node {
            data: data.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            admin_key: admin_key.into(),
            verifier_key: verifier_key.into(),
            child: None,
            _dir: None,
            env: vec![("LOYALTY_LISTEN".into(), format!("127.0.0.1:{port}"))],
            fd_limit: None,
        };
        n.start();
        n
    }

    /// Starts (or restarts) the process and waits until `/readyz` answers 200.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = format!("{}/readyz", self.url);
        loop {
            if let Ok(r) = reqwest::blocking_get_status(&url) {
                if r == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("node exited before ready: {status}");
                }
            }
            assert!(Instant::now() < deadline, "node not ready within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no clean-up at all.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("node did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// An SDK client with the admin key and the pinned verifier key.
    pub fn client(&self) -> sdk::Client {
        self.client_with_key(&self.admin_key.clone())
    }

    pub fn client_with_key(&self, key: &str) -> sdk::Client {
        sdk::Client::builder(&self.url)
            .api_key(key)
            .verifier(self.verifier_key.parse().unwrap())
            .build()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal blocking status probe without a runtime (plain HTTP/1.1 over TCP).
pub mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn blocking_get_status(url: &str) -> std::io::Result<u16> {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        buf.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))
    }
}
