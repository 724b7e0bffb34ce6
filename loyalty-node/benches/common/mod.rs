//! Helpers shared by the node's benches (`#[path]`-included; not a bench of its own).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// The value after `--name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `p` percentile of sorted latencies, in ms.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `loyalty-node init` printed for a new data directory.
pub struct Init {
    pub url: String,
    pub admin_key: String,
    pub verifier_key: String,
}

/// `bin init` in `data` for `brand`, listening on a free loopback port.
pub fn init(bin: &str, data: &Path, brand: &str) -> Init {
    let port = free_port();
    let out = Command::new(bin)
        .args(["init", "--data"])
        .arg(data)
        .args(["--brand", brand, "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run loyalty-node init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let find = |p: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or_else(|| panic!("init printed no {p}"))
            .trim()
            .to_owned()
    };
    Init {
        url: format!("http://127.0.0.1:{port}"),
        admin_key: find("admin API key (shown once, stored hashed): "),
        verifier_key: find("verifier key: "),
    }
}
