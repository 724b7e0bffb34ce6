//! Audits that resume and monitors that follow (the `loyalty` binary): `loyalty verify
//! --state DIR` against a real node, resumed after new entries, and `loyalty monitor` against
//! a real node and a fake partner that forks, shrinks, forges a signature, rewrites an entry or
//! commits one the rules refuse.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use federation_tests::fake_partner::{Behaviour, FakePartner, TARGET_MEMBER};
use federation_tests::harness::{bounded, wait_until, Node};
use sdk::EarnRequest;
use serde_json::Value;

/// Time limit of a test.
const LIMIT: Duration = Duration::from_secs(120);

/// The `loyalty` binary next to this test executable (`cargo test --workspace` builds it).
fn loyalty_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join(format!("loyalty{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no loyalty binary at {}: `cargo test --workspace` builds it",
        bin.display()
    );
    bin
}

/// Runs `loyalty ARGS`: (exit code, stdout, stderr).
async fn loyalty(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(loyalty_bin())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `loyalty --json --node URL verify --log-key KEY EXTRA...`: (exit code, JSON, stderr).
async fn verify(url: &str, key: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["--json", "--node", url, "verify", "--log-key", key];
    args.extend_from_slice(extra);
    let (code, out, err) = loyalty(&args).await;
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

async fn earn(node: &Node, from: u64, n: u64) {
    let c = node.writer_client();
    for k in from..from + n {
        let member = format!("m{}", k % 7).parse().unwrap();
        let id = format!("e{k}").parse().unwrap();
        c.earn(
            &member,
            &EarnRequest::new(id, sdk::Points::new(1 + k % 9).unwrap()),
        )
        .await
        .unwrap_or_else(|e| panic!("earn {k}: {e}"));
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_audit_replays_only_the_entries_added_since() {
    bounded(LIMIT, "a_resumed_audit", async {
        let node = Node::start_new("brand-a", &[]).await;
        earn(&node, 0, 40).await;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("audit");

        let (code, first, err) =
            verify(&node.url, &node.verifier_key, &["--state", path(&state)]).await;
        assert_eq!(code, 0, "{first} {err}");
        assert_eq!(first["ok"], true);
        let size = first["entries"].as_u64().unwrap();
        assert!(size >= 40, "{first}");
        assert_eq!(first["entries_replayed"].as_u64(), Some(size));
        assert_eq!(first["resumed_from"], Value::Null);
        // Not a terminal: no progress line, nothing on stderr.
        assert_eq!(err, "", "quiet in scripts");

        earn(&node, 40, 15).await;
        let (code, second, err) =
            verify(&node.url, &node.verifier_key, &["--state", path(&state)]).await;
        assert_eq!(code, 0, "{second} {err}");
        let grown = second["entries"].as_u64().unwrap();
        assert!(grown >= size + 15, "{second}");
        assert_eq!(second["resumed_from"].as_u64(), Some(size));
        assert_eq!(second["entries_replayed"].as_u64(), Some(grown - size));
        // The resumed state is the state of a replay from scratch.
        let (code, full, err) = verify(&node.url, &node.verifier_key, &[]).await;
        assert_eq!(code, 0, "{full} {err}");
        assert_eq!(full["entries"], second["entries"], "no writes in between");
        assert_eq!(full["system_balances"], second["system_balances"]);
        assert_eq!(full["members"], second["members"]);
        assert_eq!(full["root"], second["root"]);

        // The audit belongs to this log: another log's key is refused, and the audit is kept.
        let other = FakePartner::start("brand-z").await;
        other.append_earn(TARGET_MEMBER, 5);
        let (code, out, err) = verify(
            other.url(),
            &other.verifier_key(),
            &["--state", path(&state)],
        )
        .await;
        assert_eq!(code, 2, "{out} {err}");
        assert!(err.contains("saved for the log key"), "{err}");
        let (code, again, err) =
            verify(&node.url, &node.verifier_key, &["--state", path(&state)]).await;
        assert_eq!(code, 0, "{again} {err}");
        assert_eq!(again["resumed_from"], second["entries"]);
    })
    .await;
}

/// A webhook receiver on a loopback port: the alerts posted to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

fn config(node: &Node, fake: &FakePartner, hook: &str) -> String {
    format!(
        r#"interval_ms = 100
webhook_url = "{hook}"
webhook_timeout_ms = 2000

[[logs]]
name = "brand-a"
node = "{}"
log_key = "{}"

[[logs]]
name = "fake-b"
node = "{}"
log_key = "{}"
"#,
        node.url,
        node.verifier_key,
        fake.url(),
        fake.verifier_key()
    )
}

/// The JSON event lines of a `monitor --json` run, by log name.
fn events(out: &str) -> std::collections::BTreeMap<String, Value> {
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["log"].as_str().unwrap().to_owned(), v))
        .collect()
}

fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_follows_logs_and_alerts_on_every_misbehaviour() {
    bounded(LIMIT, "a_monitor_alerts", async {
        let node = Node::start_new("brand-a", &[]).await;
        earn(&node, 0, 20).await;
        let fake = FakePartner::start("fake-b").await;
        for i in 0..12 {
            fake.append_earn(TARGET_MEMBER, 10 + i);
        }
        let (hook, posted) = webhook().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("monitor.toml");
        std::fs::write(&cfg, config(&node, &fake, &hook)).unwrap();
        let state = dir.path().join("state");
        let metrics = dir.path().join("monitor.prom");
        let once = || async {
            loyalty(&[
                "--json",
                "monitor",
                "--once",
                "--config",
                path(&cfg),
                "--state",
                path(&state),
                "--metrics-file",
                path(&metrics),
            ])
            .await
        };

        let (code, out, err) = once().await;
        assert_eq!(code, 0, "{out} {err}");
        let e = events(&out);
        let a_size = e["brand-a"]["size"].as_u64().unwrap();
        assert_eq!(e["brand-a"]["replayed"].as_u64(), Some(a_size));
        assert_eq!(e["fake-b"]["size"].as_u64(), Some(12));

        // New entries on both: each round replays only those.
        earn(&node, 20, 5).await;
        fake.append_earn(TARGET_MEMBER, 3);
        let (code, out, err) = once().await;
        assert_eq!(code, 0, "{out} {err}");
        let e = events(&out);
        let grown = e["brand-a"]["size"].as_u64().unwrap();
        assert_eq!(e["brand-a"]["replayed"].as_u64(), Some(grown - a_size));
        assert_eq!(e["fake-b"]["replayed"].as_u64(), Some(1));
        let m = std::fs::read_to_string(&metrics).unwrap();
        assert_eq!(
            metric(&m, r#"loyalty_monitor_verified_entries{log="fake-b"}"#),
            Some(13)
        );

        // Each misbehaviour is an alert of its kind: a line, the exit status, the webhook and
        // the metric. A failed round does not move the saved audit, so each starts from the
        // same honest point; the honest node's log verifies in the same rounds.
        let kinds = [
            (Behaviour::Fork, "fork"),
            (Behaviour::Shrink, "shrink"),
            (Behaviour::ForgedSignature, "bad_checkpoint"),
            (Behaviour::RewrittenEntry, "bad_entry"),
            (Behaviour::InvalidEntry, "replay_mismatch"),
        ];
        for (behaviour, kind) in kinds {
            fake.set_behaviour(behaviour);
            let (code, out, err) = once().await;
            assert_eq!(code, 1, "{behaviour:?}: {out} {err}");
            let e = events(&out);
            assert_eq!(e["brand-a"]["ok"], true, "{out}");
            assert_eq!(e["fake-b"]["ok"], false, "{out}");
            assert_eq!(e["fake-b"]["alert"]["kind"], kind, "{behaviour:?}: {out}");
            let last = posted
                .lock()
                .unwrap()
                .last()
                .cloned()
                .expect("the webhook was called");
            assert_eq!(last["kind"], kind);
            assert_eq!(last["log"], "fake-b");
            let m = std::fs::read_to_string(&metrics).unwrap();
            let line = format!(r#"loyalty_monitor_alerts_total{{log="fake-b",kind="{kind}"}}"#);
            assert_eq!(metric(&m, &line), Some(1), "{m}");
            assert_eq!(
                metric(&m, r#"loyalty_monitor_following{log="fake-b"}"#),
                Some(0)
            );
        }
        assert_eq!(posted.lock().unwrap().len(), kinds.len());

        // Served honestly again, the log verifies from where the audit stood.
        fake.set_behaviour(Behaviour::Honest);
        let (code, out, err) = once().await;
        assert_eq!(code, 0, "{out} {err}");
        assert_eq!(events(&out)["fake-b"]["replayed"].as_u64(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_monitor_catches_a_fork_as_it_happens() {
    bounded(LIMIT, "a_running_monitor", async {
        let node = Node::start_new("brand-a", &[]).await;
        earn(&node, 0, 5).await;
        let fake = FakePartner::start("fake-b").await;
        for i in 0..6 {
            fake.append_earn(TARGET_MEMBER, 10 + i);
        }
        let (hook, posted) = webhook().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("monitor.toml");
        std::fs::write(&cfg, config(&node, &fake, &hook)).unwrap();
        let metrics = dir.path().join("monitor.prom");
        let child = tokio::process::Command::new(loyalty_bin())
            .args(["monitor", "--exit-on-alert", "--config"])
            .arg(&cfg)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--metrics-file")
            .arg(&metrics)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The monitor follows the log as it grows.
        fake.append_earn(TARGET_MEMBER, 1);
        wait_until(
            "the monitor verified 7 entries",
            Duration::from_secs(30),
            || async {
                let m = std::fs::read_to_string(&metrics).map_err(|e| e.to_string())?;
                match metric(&m, r#"loyalty_monitor_verified_entries{log="fake-b"}"#) {
                    Some(7) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        fake.set_behaviour(Behaviour::Fork);
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the monitor exits on the alert")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ALERT fake-b fork at index 7")),
            "{stdout}"
        );
        assert_eq!(posted.lock().unwrap().len(), 1);
    })
    .await;
}
