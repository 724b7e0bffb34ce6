//! A harness that runs several real `loyalty-node` processes on loopback: it picks ports, makes
//! data directories, `init`s and `run`s nodes with extra `LOYALTY_*` settings, kills them with
//! SIGKILL and restarts them on the same data, pins them as each other's partners, and stops
//! everything it started when dropped.
//!
//! Invariants: every wait has a deadline (a test never hangs on a node); a [`Node`] owns its
//! process and its temporary directory, so dropping it kills the one and removes the other; when
//! a test fails, each node's log tail is printed with the failure.

use std::fs::OpenOptions;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledger::checkpoint::{NoteVerifier, SignatureType};
use serde_json::{json, Value};

/// Environment variable naming the `loyalty-node` binary to run.
pub const NODE_BIN_ENV: &str = "LOYALTY_NODE_BIN";
/// Environment variable with the `RUST_LOG` filter the nodes run with (default `warn`).
pub const NODE_LOG_ENV: &str = "LOYALTY_TEST_NODE_LOG";
/// How long a started node has to answer `/readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node has to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two probes of [`wait_until`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Time limit of one HTTP request the harness sends.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of a node's log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 80;

/// Settings that make federation rounds fast enough for tests.
pub const FAST_FEDERATION: &[(&str, &str)] = &[
    ("LOYALTY_SYNC_INTERVAL_MS", "100"),
    ("LOYALTY_WITNESS_INTERVAL_MS", "200"),
];

/// The `loyalty-node` binary: `$LOYALTY_NODE_BIN`, or else `target/<profile>/loyalty-node`
/// next to this test executable (`target/<profile>/deps/<test>`), which `cargo test
/// --workspace` builds.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(NODE_BIN_ENV) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let bin = dir.join(format!("loyalty-node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no loyalty-node binary at {}: build the workspace (`cargo test --workspace` builds it) \
         or set {NODE_BIN_ENV}",
        bin.display()
    );
    check_not_stale(&bin);
    bin
}

/// Fails the test when a source file the binary was built from (per cargo's dep-info file
/// `<bin>.d`) is newer than the binary: `cargo test --workspace --test federation` does not
/// rebuild `loyalty-node`, and a test of stale code proves nothing.
fn check_not_stale(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let Ok(text) = std::fs::read_to_string(&dep_info) else {
        return;
    };
    let Some((_, sources)) = text.lines().next().and_then(|l| l.split_once(": ")) else {
        return;
    };
    // Dep-info escapes spaces in paths as `\ `.
    let sources = sources.replace("\\ ", "\u{0}");
    for src in sources.split_whitespace() {
        let src = src.replace('\u{0}', " ");
        let modified = std::fs::metadata(&src).and_then(|m| m.modified());
        if let Ok(m) = modified {
            assert!(
                m <= built,
                "{} is older than {src}: it would test stale code. Build it first with \
                 `cargo test --workspace --no-run`, or set {NODE_BIN_ENV}",
                bin.display()
            );
        }
    }
}

/// A free loopback port (the OS picks it; a tiny race with other binders is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Runs `f`, failing the test if it takes longer than `limit`: every test bounds its time.
pub async fn bounded<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that value; fails
/// the test after `limit` with the last reason `probe` gave.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::from("not probed yet");
    loop {
        match tokio::time::timeout_at(deadline.into(), probe()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(why)) => last = why,
            Err(_) => last = format!("a probe was still running at the deadline (before: {last})"),
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {limit:?}; last: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The `Content-Type` header, or empty.
    pub content_type: String,
    pub text: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.text)
            .map_err(|e| format!("answer {} is not JSON ({e}): {}", self.status, self.text))
    }

    /// The body as JSON, failing the test if it is not a 2xx JSON answer.
    pub fn ok_json(&self, what: &str) -> Value {
        assert!(
            self.is_success(),
            "{what}: status {}: {}",
            self.status,
            self.text
        );
        self.json().unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// The RFC 9457 problem `code`, if the body is a problem.
    pub fn code(&self) -> Option<String> {
        self.json()
            .ok()?
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Fails the test unless this is a problem with `status` and `code`, as
    /// `application/problem+json`.
    pub fn assert_problem(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status, self.code().as_deref()),
            (status, Some(code)),
            "{what}: expected {status} {code}, got {} {}",
            self.status,
            self.text
        );
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "{what}: problem served as {:?}",
            self.content_type
        );
    }
}

/// Sends a request and reads the whole answer; transport failures are `Err`.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let r = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r
        .text()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    Ok(Answer {
        status,
        content_type,
        text,
    })
}

/// An HTTP client for tests: bounded time per request, no connection reuse surprises.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// A list field of a JSON answer: `v[field]` when it is an array, or `v` itself when the
/// answer is a bare array (the federation routes' list shapes are not fixed by the spec).
pub fn list<'a>(v: &'a Value, field: &str) -> Vec<&'a Value> {
    v.get(field)
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// A `u64` field, or an error naming it.
pub fn u64_field(v: &Value, field: &str) -> Result<u64, String> {
    v.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no integer {field:?} in {v}"))
}

/// The member part of a mirrored member read (spec/federation.md §3): `v["member"]` when it is
/// an object, or else the answer without its `checkpoint` and `receipt` fields.
pub fn mirrored_member_part(v: &Value) -> Value {
    if let Some(m) = v.get("member").filter(|m| m.is_object()) {
        return m.clone();
    }
    let mut m = v.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("checkpoint");
        o.remove("receipt");
    }
    m
}

/// A running (or stopped) `loyalty-node` with its own temporary data directory (or, from
/// [`Node::start_existing`], a data directory someone else made).
pub struct Node {
    pub brand: String,
    /// The log origin (the name of the node's key).
    pub origin: String,
    pub url: String,
    pub port: u16,
    pub data: PathBuf,
    pub admin_key: String,
    /// The node's C2SP verifier key, as `init` printed it.
    pub verifier_key: String,
    log_path: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn parse_init(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("init printed no {prefix:?}: {out}"))
        .trim()
        .to_owned()
}

impl Node {
    /// `init`s a fresh node for `brand` on a free loopback port and starts it with the extra
    /// environment `env` (e.g. `LOYALTY_SYNC_INTERVAL_MS`); waits until it is ready.
    pub async fn start_new(brand: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("node");
        let port = free_port();
        let bin = node_bin();
        let init = {
            let data = data.clone();
            let brand = brand.to_owned();
            tokio::task::spawn_blocking(move || {
                Command::new(bin)
                    .args(["init", "--data"])
                    .arg(&data)
                    .args(["--brand", &brand, "--listen", &format!("127.0.0.1:{port}")])
                    .output()
            })
            .await
            .expect("init task")
            .expect("run loyalty-node init")
        };
        assert!(
            init.status.success(),
            "init of {brand} failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let text = String::from_utf8(init.stdout).expect("init prints UTF-8");
        let verifier_key = parse_init(&text, "verifier key: ");
        let origin = NoteVerifier::parse(&verifier_key)
            .expect("init printed a valid verifier key")
            .name()
            .to_owned();
        let mut node = Node {
            brand: brand.to_owned(),
            origin,
            url: format!("http://127.0.0.1:{port}"),
            port,
            log_path: dir.path().join("node.log"),
            data,
            admin_key: parse_init(&text, "admin API key (shown once, stored hashed): "),
            verifier_key,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            http: http_client(),
            _dir: dir,
        };
        node.start().await;
        node
    }

    /// Starts a node on a data directory made elsewhere (e.g. by `loyalty-node demo`), which
    /// listens at `url` by its own config, with the extra environment `env`; waits until it is
    /// ready. The data directory is left in place when the node is dropped; the node's log goes
    /// to a temporary directory.
    pub async fn start_existing(
        brand: &str,
        data: &Path,
        url: &str,
        admin_key: &str,
        verifier_key: &str,
        env: &[(&str, &str)],
    ) -> Node {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        let origin = NoteVerifier::parse(verifier_key)
            .unwrap_or_else(|e| panic!("{brand}: bad verifier key {verifier_key}: {e}"))
            .name()
            .to_owned();
        let mut node = Node {
            brand: brand.to_owned(),
            origin,
            url: url.trim_end_matches('/').to_owned(),
            port,
            log_path: dir.path().join("node.log"),
            data: data.to_owned(),
            admin_key: admin_key.to_owned(),
            verifier_key: verifier_key.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            http: http_client(),
            _dir: dir,
        };
        node.start().await;
        node
    }

    /// Starts (or restarts, on the same data and port) the process and waits until `/readyz`
    /// answers 200.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.brand);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the node's log file");
        let child = Command::new(node_bin())
            .args(["run", "--data"])
            .arg(&self.data)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var(NODE_LOG_ENV).unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .expect("spawn loyalty-node run");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.url);
        loop {
            if let Ok(r) = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    panic!(
                        "{} exited before it was ready ({status}); its log:\n{}",
                        self.brand,
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {READY_TIMEOUT:?}; its log:\n{}",
                self.brand,
                self.log_tail(LOG_TAIL_LINES)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets (or, with `None`, removes) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_owned(), v.to_owned()));
        }
    }

    /// SIGKILL and reap: no clean-up at all. Does nothing when the node is not running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the node is running");
        let pid = c.id().to_string();
        let term = tokio::task::spawn_blocking(move || {
            Command::new("kill").args(["-TERM", &pid]).status()
        })
        .await
        .expect("kill task")
        .expect("run kill -TERM");
        assert!(term.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(s) = c.try_wait().expect("wait for the node") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM",
                    self.brand
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of the node's log (every run appends to one file).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The lines of the node's log (every run of it) that contain `needle`, at most `max`
    /// (the last ones).
    pub fn log_lines_with(&self, needle: &str, max: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        hits[hits.len().saturating_sub(max)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// The node's pinned log key (Ed25519, `0x01`).
    pub fn log_verifier(&self) -> NoteVerifier {
        NoteVerifier::parse(&self.verifier_key).expect("a valid verifier key")
    }

    /// The node's witness key, derived from its log key (same name and public key, type
    /// `0x04`; spec/federation.md §1).
    pub fn witness_verifier(&self) -> NoteVerifier {
        witness_verifier_of(&self.log_verifier())
    }

    /// An SDK client with the admin key and the pinned verifier key (default retries).
    pub fn client(&self) -> sdk::Client {
        sdk::Client::builder(&self.url)
            .api_key(self.admin_key.clone())
            .verifier(self.log_verifier())
            .build()
            .expect("an SDK client")
    }

    /// An SDK client for load: no retries and a short time limit, so a write either is
    /// acknowledged (and then durable) or fails fast.
    pub fn writer_client(&self) -> sdk::Client {
        sdk::Client::builder(&self.url)
            .api_key(self.admin_key.clone())
            .verifier(self.log_verifier())
            .retry(sdk::RetryPolicy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an SDK client")
    }

    /// `GET path` with the admin key.
    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        send(
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.admin_key),
        )
        .await
    }

    /// `POST path` with a JSON body and the admin key.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Answer, String> {
        send(
            self.http
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.admin_key)
                .json(body),
        )
        .await
    }

    /// The size of the node's latest checkpoint, verified against its own key.
    pub async fn log_size(&self) -> Result<u64, String> {
        let a = self.get("/checkpoint").await?;
        if a.status != 200 {
            return Err(format!(
                "{} /checkpoint: {} {}",
                self.brand, a.status, a.text
            ));
        }
        let (cp, _) = ledger::checkpoint::open_checkpoint(&a.text, &self.log_verifier())
            .map_err(|e| format!("{} /checkpoint does not verify: {e}", self.brand))?;
        Ok(cp.size)
    }

    /// Pins a partner through `POST /v1/admin/partners` (spec/federation.md §1).
    pub async fn pin(&self, brand: &str, url: &str, verifier_key: &str) -> Answer {
        self.post_json(
            "/v1/admin/partners",
            &json!({"brand": brand, "url": url, "verifier_key": verifier_key}),
        )
        .await
        .expect("POST /v1/admin/partners")
    }

    /// Pins `other`, with the key its `GET /v1/log/key` serves (checked against the key its
    /// `init` printed); fails the test unless the node accepts it.
    pub async fn pin_node(&self, other: &Node) {
        let key = other
            .get("/v1/log/key")
            .await
            .expect("GET /v1/log/key")
            .ok_json("GET /v1/log/key");
        let verifier_key = key["verifier_key"]
            .as_str()
            .expect("verifier_key")
            .to_owned();
        assert_eq!(
            verifier_key, other.verifier_key,
            "{} serves another key",
            other.brand
        );
        assert_eq!(key["origin"].as_str(), Some(other.origin.as_str()));
        let a = self.pin(&other.brand, &other.url, &verifier_key).await;
        assert!(
            a.is_success(),
            "{} refused to pin {}: {} {}",
            self.brand,
            other.brand,
            a.status,
            a.text
        );
    }

    /// `GET /v1/partners`, as a list of partner objects.
    pub async fn partners(&self) -> Result<Vec<Value>, String> {
        let a = self.get("/v1/partners").await?;
        if a.status != 200 {
            return Err(format!(
                "{} /v1/partners: {} {}",
                self.brand, a.status, a.text
            ));
        }
        let v = a.json()?;
        Ok(list(&v, "partners").into_iter().cloned().collect())
    }

    /// One partner of `GET /v1/partners`.
    pub async fn partner(&self, brand: &str) -> Result<Value, String> {
        self.partners()
            .await?
            .into_iter()
            .find(|p| p["brand"].as_str() == Some(brand))
            .ok_or_else(|| format!("{} does not list partner {brand}", self.brand))
    }

    /// `GET /v1/evidence`, as a list of evidence objects.
    pub async fn evidence(&self) -> Result<Vec<Value>, String> {
        let a = self.get("/v1/evidence").await?;
        if a.status != 200 {
            return Err(format!(
                "{} /v1/evidence: {} {}",
                self.brand, a.status, a.text
            ));
        }
        let v = a.json()?;
        Ok(list(&v, "evidence").into_iter().cloned().collect())
    }

    /// `GET /v1/partners/{brand}/members/{member}`: the member from this node's mirror.
    pub async fn mirrored_member(&self, brand: &str, member: &str) -> Result<Value, String> {
        let a = self
            .get(&format!("/v1/partners/{brand}/members/{member}"))
            .await?;
        if a.status != 200 {
            return Err(format!(
                "{} mirrored member {brand}/{member}: {} {}",
                self.brand, a.status, a.text
            ));
        }
        a.json()
    }

    /// `GET /v1/members/{member}` as JSON.
    pub async fn member_json(&self, member: &str) -> Result<Value, String> {
        let a = self.get(&format!("/v1/members/{member}")).await?;
        if a.status != 200 {
            return Err(format!(
                "{} member {member}: {} {}",
                self.brand, a.status, a.text
            ));
        }
        a.json()
    }

    /// The value of the metric sample `name{...}` whose labels include every `labels` pair,
    /// from `/metrics`; `None` when there is no such sample.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<Option<f64>, String> {
        let a = self.get("/metrics").await?;
        if a.status != 200 {
            return Err(format!("{} /metrics: {}", self.brand, a.status));
        }
        Ok(metric_value(&a.text, name, labels))
    }
}

/// The value of the first sample of `name` in Prometheus text whose labels include every
/// `labels` pair.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let label_text = match rest {
            "" => "",
            r if r.starts_with('{') && r.ends_with('}') => &r[1..r.len() - 1],
            _ => return None,
        };
        labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// The witness key (`0x04`) derived from a node's log key (spec/federation.md §1).
pub fn witness_verifier_of(log_key: &NoteVerifier) -> NoteVerifier {
    NoteVerifier::from_public_key(
        log_key.name(),
        SignatureType::CosignatureV1,
        &log_key.public_key(),
    )
    .expect("a log key gives a valid witness key")
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- log of node {} ({}), last {LOG_TAIL_LINES} lines ----\n{}",
                self.brand,
                self.url,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

/// Starts one fresh node per brand, each with `env`.
pub async fn start_nodes(brands: &[&str], env: &[(&str, &str)]) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(brands.len());
    for b in brands {
        nodes.push(Node::start_new(b, env).await);
    }
    nodes
}

/// Pins every node as a partner of every other.
pub async fn pin_all(nodes: &[Node]) {
    for a in nodes {
        for b in nodes {
            if a.brand != b.brand {
                a.pin_node(b).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_found_by_labels() {
        let text = "# HELP x\n\
                    loyalty_partner_frozen{brand=\"fake\"} 1\n\
                    loyalty_partner_frozen{brand=\"other\"} 0\n\
                    loyalty_evidence_total{brand=\"fake\",kind=\"fork\"} 2\n\
                    loyalty_log_size_entries 7\n";
        assert_eq!(
            metric_value(text, "loyalty_partner_frozen", &[("brand", "fake")]),
            Some(1.0)
        );
        assert_eq!(
            metric_value(text, "loyalty_partner_frozen", &[("brand", "other")]),
            Some(0.0)
        );
        assert_eq!(
            metric_value(
                text,
                "loyalty_evidence_total",
                &[("brand", "fake"), ("kind", "fork")]
            ),
            Some(2.0)
        );
        assert_eq!(
            metric_value(text, "loyalty_log_size_entries", &[]),
            Some(7.0)
        );
        assert_eq!(metric_value(text, "loyalty_partner", &[]), None);
        assert_eq!(
            metric_value(text, "loyalty_partner_frozen", &[("brand", "nobody")]),
            None
        );
    }

    /// A fake binary built `age` ago, with a dep-info file naming one source (with a space
    /// in its path) last changed an hour ago.
    fn fake_build(dir: &Path, age: Duration) -> PathBuf {
        let bin = dir.join("loyalty-node");
        let src = dir.join("a source.rs");
        std::fs::write(&src, "fn main() {}").unwrap();
        std::fs::write(&bin, "binary").unwrap();
        let dep_info = format!(
            "{}: {}\n",
            bin.display(),
            src.display().to_string().replace(' ', "\\ ")
        );
        std::fs::write(dir.join("loyalty-node.d"), dep_info).unwrap();
        let set = |f: &Path, t: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        set(&bin, SystemTime::now() - age);
        set(&src, SystemTime::now() - Duration::from_secs(3600));
        bin
    }

    #[test]
    #[should_panic(expected = "stale code")]
    fn a_binary_older_than_its_sources_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Built two hours ago, from a source changed one hour ago.
        let bin = fake_build(dir.path(), Duration::from_secs(7200));
        check_not_stale(&bin);
    }

    #[test]
    fn a_binary_newer_than_its_sources_is_used() {
        let dir = tempfile::tempdir().unwrap();
        // Built now, from a source changed one hour ago.
        let bin = fake_build(dir.path(), Duration::ZERO);
        check_not_stale(&bin);
    }

    #[test]
    fn lists_and_member_parts_take_either_shape() {
        let v = json!({"partners": [{"brand": "a"}]});
        assert_eq!(list(&v, "partners").len(), 1);
        let v = json!([{"brand": "a"}, {"brand": "b"}]);
        assert_eq!(list(&v, "partners").len(), 2);
        let nested = json!({"member": {"member": "m", "balance": 1}, "checkpoint": "x"});
        assert_eq!(mirrored_member_part(&nested)["balance"], 1);
        let flat = json!({"member": "m", "balance": 1, "checkpoint": "x", "receipt": {}});
        assert_eq!(
            mirrored_member_part(&flat),
            json!({"member": "m", "balance": 1})
        );
    }
}
