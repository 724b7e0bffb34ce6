//! `deploy/entrypoint.sh` run for real, as the containers run it but without a container:
//! three brands in temporary directories (`DEPLOY_DATA`, `DEPLOY_FEDERATION`), the built
//! `loyalty-node` first on `PATH`, free loopback ports. The nodes must come up pinned to each
//! other, mirror each other's writes, and come back unchanged when the script runs again.
//!
//! Every wait has a deadline; every process started here is killed when its [`Scripted`] is
//! dropped (the script `exec`s the node, so the process is the node once it serves).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use federation_tests::harness::{
    bounded, free_port, http_client, node_bin, wait_until, FAST_FEDERATION, LOG_TAIL_LINES,
    NODE_LOG_ENV,
};
use ledger::checkpoint::NoteVerifier;
use sdk::{EarnRequest, PartnerStatus};

use super::{root, SERVICES};

/// Time limit of the whole three-node test.
const LIMIT: Duration = Duration::from_secs(180);
/// How long a started script has to bring its node to `/readyz` 200.
const READY: Duration = Duration::from_secs(60);
/// How long mirrors have to show the partners' writes.
const CONVERGE: Duration = Duration::from_secs(30);
/// How long a stopped or refusing script has to exit.
const EXIT: Duration = Duration::from_secs(30);
/// `DEPLOY_PARTNER_WAIT_S` of the three-node test: far longer than the test needs.
const PARTNER_WAIT_S: &str = "60";

/// One brand run through the entrypoint script.
struct Scripted {
    brand: &'static str,
    partners: Vec<&'static str>,
    port: u16,
    data: PathBuf,
    federation: PathBuf,
    log: PathBuf,
    partner_wait_s: &'static str,
    child: Option<Child>,
}

impl Scripted {
    fn new(root: &Path, brand: &'static str, partners: Vec<&'static str>) -> Scripted {
        Scripted {
            brand,
            partners,
            port: free_port(),
            data: root.join(brand),
            federation: root.join("federation"),
            log: root.join(format!("{brand}.log")),
            partner_wait_s: PARTNER_WAIT_S,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The script's command with this brand's environment and nothing inherited but `PATH`,
    /// which starts with the built binary's directory.
    fn command(&self, brand: &str) -> Command {
        let bin = node_bin();
        let path = format!(
            "{}:{}",
            bin.parent().expect("the binary's directory").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("bash");
        c.arg(root().join("deploy/entrypoint.sh"))
            .env_clear()
            .env("PATH", path)
            .env("LOYALTY_BRAND", brand)
            .env("LOYALTY_LISTEN", self.listen())
            .env("LOYALTY_PUBLIC_URL", self.url())
            .env("DEPLOY_PARTNERS", self.partners.join(" "))
            .env("DEPLOY_DATA", &self.data)
            .env("DEPLOY_FEDERATION", &self.federation)
            .env("DEPLOY_PARTNER_WAIT_S", self.partner_wait_s)
            .env(
                "RUST_LOG",
                std::env::var(NODE_LOG_ENV).unwrap_or_else(|_| "warn".into()),
            )
            .envs(FAST_FEDERATION.iter().copied())
            .stdin(Stdio::null());
        c
    }

    /// Starts the script; its output is appended to this brand's log file.
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.brand);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let child = self
            .command(self.brand)
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("run bash deploy/entrypoint.sh");
        self.child = Some(child);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn read(&self, file: &str) -> String {
        let path = self.data.join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn admin_key(&self) -> String {
        self.read("admin-key").trim().to_owned()
    }

    fn verifier_key(&self) -> String {
        self.read("verifier-key").trim().to_owned()
    }

    fn client(&self) -> sdk::Client {
        sdk::Client::builder(&self.url())
            .api_key(self.admin_key())
            .verifier(NoteVerifier::parse(&self.verifier_key()).expect("a verifier key"))
            .build()
            .expect("an SDK client")
    }

    /// Fails the test if the script (or the node it became) has exited.
    fn assert_running(&mut self) {
        let c = self.child.as_mut().expect("started");
        if let Ok(Some(status)) = c.try_wait() {
            self.child = None;
            panic!("{}'s entrypoint exited ({status})", self.brand);
        }
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&mut self) {
        let http = http_client();
        let url = format!("{}/readyz", self.url());
        let deadline = Instant::now() + READY;
        loop {
            self.assert_running();
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {READY:?}",
                self.brand
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log holds `text`.
    async fn wait_logged(&mut self, text: &str) {
        let deadline = Instant::now() + READY;
        while !self.log_text().contains(text) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} never logged {text:?}",
                self.brand
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    async fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let term = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(term.success(), "kill -TERM {}", self.brand);
        wait_exit(&mut c, self.brand).await
    }
}

async fn wait_exit(c: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + EXIT;
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what} did not exit within {EXIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "---- log of {} ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.brand,
                self.url(),
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            );
        }
    }
}

/// The three compose brands, each with the two others as partners.
fn federation(root: &Path) -> Vec<Scripted> {
    SERVICES
        .iter()
        .map(|b| {
            let partners = SERVICES.iter().copied().filter(|p| p != b).collect();
            Scripted::new(root, b, partners)
        })
        .collect()
}

/// Checks that `n` lists exactly its partners, each pinned with the key and URL the partner's
/// own entrypoint recorded and published.
async fn assert_pinned(n: &Scripted, all: &[Scripted]) -> Vec<PartnerStatus> {
    let listed = n.client().partners().await.expect("GET /v1/partners");
    let mut brands: Vec<String> = listed.iter().map(|p| p.brand.to_string()).collect();
    brands.sort();
    assert_eq!(brands, n.partners, "{}'s partners", n.brand);
    for p in &listed {
        let other = all
            .iter()
            .find(|o| o.brand == p.brand.as_str())
            .expect("a partner of the federation");
        assert!(p.pinned, "{} did not pin {}", n.brand, other.brand);
        assert_eq!(
            p.verifier_key.as_deref(),
            Some(other.verifier_key().as_str()),
            "{} pinned another key for {}",
            n.brand,
            other.brand
        );
        assert_eq!(p.url, other.url(), "{}'s URL of {}", n.brand, other.brand);
        assert!(!p.frozen, "{} froze {}: {p:?}", n.brand, other.brand);
    }
    listed
}

/// Waits until every node's mirror of every partner holds at least `size` verified entries.
async fn wait_mirrored(nodes: &[Scripted], size: u64) {
    for n in nodes {
        let c = n.client();
        wait_until(
            &format!("{} mirrors its partners up to {size}", n.brand),
            CONVERGE,
            || async {
                let listed = c.partners().await.map_err(|e| e.to_string())?;
                match listed.iter().find(|p| p.verified_size < size) {
                    Some(p) => Err(format!("{} verified {}: {p:?}", p.brand, p.verified_size)),
                    None => Ok(()),
                }
            },
        )
        .await;
    }
}

/// The `[[partners]]` tables of a config.toml (the template's commented example left out).
fn pinned_tables(config: &str) -> usize {
    config
        .lines()
        .filter(|l| l.trim() == "[[partners]]")
        .count()
}

fn healthcheck(listen: &str, path: &str) -> bool {
    Command::new("bash")
        .arg(root().join("deploy/healthcheck.sh"))
        .arg(path)
        .env("LOYALTY_LISTEN", listen)
        .stderr(Stdio::null())
        .status()
        .expect("run deploy/healthcheck.sh")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrypoint_inits_publishes_pins_and_restarts_idempotently() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("federation")).expect("the federation directory");
    let mut nodes = federation(dir.path());
    bounded(LIMIT, "the entrypoint test", async {
        // The first brand publishes its key and waits for its partners, bounded and saying so.
        nodes[0].start();
        nodes[0]
            .wait_logged("waiting up to 60 s for partner coffee")
            .await;
        assert!(
            !healthcheck(&nodes[0].listen(), "/readyz"),
            "airline serves before its partners are pinned"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("federation/airline.vkey"))
                .expect("airline published its key")
                .trim(),
            nodes[0].verifier_key()
        );
        for n in &mut nodes[1..] {
            n.start();
        }
        for n in &mut nodes {
            n.wait_ready().await;
        }

        for n in &nodes {
            let log = n.log_text();
            assert_eq!(log.matches("first start: loyalty-node init").count(), 1);
            assert!(
                !n.data.join(".init-output").exists(),
                "init's output is kept"
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(n.data.join("admin-key"))
                    .expect("the admin key file")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{}'s admin-key mode", n.brand);
            }
            let config = n.read("config.toml");
            assert!(
                config.contains(&format!("listen = \"{}\"", n.listen())),
                "init got LOYALTY_LISTEN as --listen"
            );
            assert_eq!(
                pinned_tables(&config),
                2,
                "{}'s [[partners]] tables",
                n.brand
            );
            let published = |ext: &str| {
                std::fs::read_to_string(n.federation.join(format!("{}.{ext}", n.brand)))
                    .expect("a published file")
                    .trim()
                    .to_owned()
            };
            assert_eq!(published("vkey"), n.verifier_key());
            assert_eq!(published("url"), n.url());
            let served = n.client().log_key().await.expect("GET /v1/log/key");
            assert_eq!(
                served.verifier_key,
                n.verifier_key(),
                "the recorded key is the node's"
            );
            assert!(healthcheck(&n.listen(), "/readyz"));
            assert!(healthcheck(&n.listen(), "/healthz"));
            assert!(!healthcheck(&n.listen(), "/no-such-route"));
            assert_pinned(n, &nodes).await;
        }

        // Pinned and syncing: each brand's earn reaches the two others' verified mirrors.
        for n in &nodes {
            n.client()
                .earn(
                    &"m-1".parse().unwrap(),
                    &EarnRequest::new(
                        format!("deploy-{}", n.brand).parse().unwrap(),
                        sdk::Points::new(10).unwrap(),
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("earn at {}: {e}", n.brand));
        }
        wait_mirrored(&nodes, 1).await;

        // A restart runs no second init and pins nothing twice.
        let files = ["config.toml", "node.key", "admin-key", "verifier-key"];
        let before: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| files.iter().map(|f| n.read(f)).collect())
            .collect();
        for n in &mut nodes {
            let status = n.stop().await;
            assert!(status.success(), "{} stopped with {status}", n.brand);
        }
        for n in &mut nodes {
            n.start();
        }
        for n in &mut nodes {
            n.wait_ready().await;
        }
        for (n, before) in nodes.iter().zip(&before) {
            for (f, was) in files.iter().zip(before) {
                assert_eq!(n.read(f), *was, "{}'s {f} changed on restart", n.brand);
            }
            let log = n.log_text();
            assert_eq!(log.matches("first start: loyalty-node init").count(), 1);
            assert_eq!(log.matches("not running init again").count(), 1);
            assert_eq!(log.matches("pinned partner").count(), 2);
            let listed = assert_pinned(n, &nodes).await;
            assert!(
                listed.iter().all(|p| p.verified_size >= 1),
                "{}'s mirrors restarted empty: {listed:?}",
                n.brand
            );
        }

        // A data directory is never taken over by another brand.
        let status = {
            let n = &mut nodes[0];
            n.stop().await;
            let mut wrong = n
                .command("coffee")
                .env("DEPLOY_PARTNERS", "gym")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run the entrypoint");
            let status = wait_exit(&mut wrong, "the entrypoint with another brand").await;
            let mut err = String::new();
            std::io::Read::read_to_string(&mut wrong.stderr.take().unwrap(), &mut err).unwrap();
            assert!(
                err.contains("holds the node of brand 'airline', not 'coffee'"),
                "{err}"
            );
            status
        };
        assert!(!status.success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrypoint_starts_without_a_partner_that_never_publishes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("federation")).expect("the federation directory");
    let mut solo = Scripted::new(dir.path(), "airline", vec!["ghost"]);
    solo.partner_wait_s = "1";
    bounded(LIMIT, "the lonely entrypoint", async {
        solo.start();
        solo.wait_ready().await;
        assert!(solo
            .log_text()
            .contains("partner ghost published no key within 1 s; starting without pinning it"));
        assert!(solo.client().partners().await.unwrap().is_empty());
        assert_eq!(pinned_tables(&solo.read("config.toml")), 0);
    })
    .await;
}
