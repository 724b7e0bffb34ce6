//! `loyalty-node demo` runs its whole scenario, and what its report says it did is what the
//! nodes' APIs show once they are started again from the demo's data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use federation_tests::harness::{
    bounded, node_bin, now_ms, wait_until, Node, FAST_FEDERATION, STOP_TIMEOUT,
};
use serde_json::{json, Value};

/// How long the demo may take to run its scenario and stop its nodes (it waits about 30 s
/// for its settlement period to end).
const DEMO_LIMIT: Duration = Duration::from_secs(240);
/// The whole test.
const LIMIT: Duration = Duration::from_secs(400);

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {v}"))
        .to_owned()
}

fn int(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {field:?} in {v}"))
}

/// Runs `loyalty-node demo --dir DIR --exit-after-scenario --report FILE`, bounded: past
/// [`DEMO_LIMIT`] it gets SIGTERM (it then stops its nodes), and SIGKILL if that does not end
/// it. Returns its stdout; fails the test unless it exited with success.
fn run_demo(dir: &Path, report: &Path, out_dir: &Path) -> String {
    let stdout_path = out_dir.join("demo.stdout");
    let stderr_path = out_dir.join("demo.stderr");
    let mut child = Command::new(node_bin())
        .arg("demo")
        .arg("--dir")
        .arg(dir)
        .arg("--exit-after-scenario")
        .arg("--report")
        .arg(report)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start loyalty-node demo");
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the demo") {
            break s;
        }
        if started.elapsed() > DEMO_LIMIT {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the demo did not finish within {DEMO_LIMIT:?}; its output:\n{}\n{}",
                read(&stdout_path),
                read(&stderr_path)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = read(&stdout_path);
    assert!(
        status.success(),
        "the demo failed ({status}):\n{stdout}\n{}",
        read(&stderr_path)
    );
    eprintln!(
        "the demo took {:.1} s; its output:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_scenario_and_its_report_matches_the_nodes() {
    bounded(LIMIT, "demo", async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let report_path = tmp.path().join("report.json");
        let (d, r, o) = (dir.clone(), report_path.clone(), tmp.path().to_owned());
        let stdout = tokio::task::spawn_blocking(move || run_demo(&d, &r, &o))
            .await
            .expect("the demo task");
        for what in ["Scenario done", "/explorer/settlement", "Nodes stopped"] {
            assert!(stdout.contains(what), "no {what:?} in the demo's output");
        }
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();

        // Start the three nodes again from the demo's data, where the demo ran them.
        let mut nodes = Vec::new();
        for n in report["nodes"].as_array().unwrap() {
            let data = PathBuf::from(text(n, "data"));
            assert!(
                data.starts_with(&dir),
                "{} outside the demo dir",
                data.display()
            );
            nodes.push(
                Node::start_existing(
                    &text(n, "brand"),
                    &data,
                    &text(n, "url"),
                    &text(n, "admin_key"),
                    &text(n, "verifier_key"),
                    FAST_FEDERATION,
                )
                .await,
            );
        }
        assert_eq!(nodes.len(), 3);
        let node = |brand: &str| -> &Node {
            nodes
                .iter()
                .find(|n| n.brand == brand)
                .unwrap_or_else(|| panic!("no node {brand} in the report"))
        };
        let currencies: Vec<String> = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| text(n, "currency"))
            .collect();
        assert!(
            currencies.iter().any(|c| c != &currencies[0]),
            "one brand in another currency: {currencies:?}"
        );

        // Balances, pending points and tiers.
        for m in report["members"].as_array().unwrap() {
            let at = node(&text(m, "brand"));
            let got = at.member_json(&text(m, "member")).await.unwrap();
            for field in ["balance", "pending", "tier"] {
                assert_eq!(
                    got[field], m[field],
                    "{field} of {m} at {}: {got}",
                    at.brand
                );
            }
        }

        // Redemptions: posted holds at the payer, locked quotes at the payee.
        for r in report["redemptions"].as_array().unwrap() {
            let red = text(r, "redemption");
            let hold = node(&text(r, "payer"))
                .get(&format!("/v1/holds/{red}"))
                .await
                .unwrap()
                .ok_json("hold");
            assert_eq!(hold["status"], json!("posted"), "{hold}");
            assert_eq!(hold["points"], r["points"], "{hold}");
            let q = node(&text(r, "payee"))
                .get(&format!("/v1/redemptions/{red}/quote"))
                .await
                .unwrap()
                .ok_json("quote");
            assert_eq!(q["quote"]["amount_minor"], r["amount_minor"], "{q}");
            assert_eq!(q["quote"]["currency"], r["currency"], "{q}");
        }
        assert!(report["redemptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resumed_after_crash"] == json!(true)));

        // Obligations over every line, and the refund's line, from both sides.
        let to = now_ms() + 86_400_000;
        for o in report["obligations"].as_array().unwrap() {
            let (payer, payee, agreement) =
                (text(o, "payer"), text(o, "payee"), text(o, "agreement"));
            for (me, partner) in [(&payer, &payee), (&payee, &payer)] {
                let at = node(me);
                let path =
                    format!("/v1/reconciliation/{partner}?agreement={agreement}&from=0&to={to}");
                let rec = wait_until(
                    "the mirrors agree again",
                    Duration::from_secs(60),
                    || async {
                        let v = at.get(&path).await?.json()?;
                        if v["agreed"] == json!(true) {
                            Ok(v)
                        } else {
                            Err(format!("not agreed: {v}"))
                        }
                    },
                )
                .await;
                let lines = rec["lines"].as_array().unwrap();
                assert_eq!(lines.len() as u64, int(o, "lines"), "{me}: {rec}");
                let net = o["net_minor"].as_i64().unwrap();
                assert_eq!(rec["ours"]["net"]["payer"], json!(payer), "{me}: {rec}");
                assert_eq!(
                    rec["ours"]["net"]["amount_minor"],
                    json!(net.unsigned_abs()),
                    "{me}: {rec}"
                );
                for f in report["refunds"].as_array().unwrap() {
                    if f["payer"] != json!(payer) || f["payee"] != json!(payee) {
                        continue;
                    }
                    let line = lines
                        .iter()
                        .find(|l| l["refund"] == f["refund"])
                        .unwrap_or_else(|| panic!("{me}: no line of refund {f}: {rec}"));
                    assert_eq!(line["redemption"], f["redemption"]);
                    assert_eq!(line["status"], json!("matched"));
                    assert_eq!(
                        line["amount_ours_minor"],
                        json!(-(int(f, "amount_minor") as i64)),
                        "{me}: {line}"
                    );
                }
            }
        }
        assert!(!report["refunds"].as_array().unwrap().is_empty());

        // The co-signed statements, logged identically by both brands.
        let statements = report["statements"].as_array().unwrap();
        assert!(!statements.is_empty());
        for s in statements {
            let agreement = text(s, "agreement");
            let a = report["agreements"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["agreement"] == s["agreement"])
                .unwrap();
            let mut bodies = Vec::new();
            for (me, partner) in [
                (text(a, "payer"), text(a, "payee")),
                (text(a, "payee"), text(a, "payer")),
            ] {
                let at = node(&me);
                let v = at
                    .get(&format!("/v1/statements/{partner}?agreement={agreement}"))
                    .await
                    .unwrap()
                    .ok_json("statements");
                let list = federation_tests::harness::list(&v, "statements");
                let logged = list
                    .iter()
                    .find(|l| l["period"] == s["period"])
                    .unwrap_or_else(|| {
                        panic!("{me} logged no statement of period {}: {v}", s["period"])
                    });
                let st = &logged["statement"]["statement"];
                assert_eq!(st["net"], s["net"], "{me}: {logged}");
                assert_eq!(st["lines"], s["lines"], "{me}");
                assert_eq!(
                    st["period"],
                    json!({"from": s["from"], "to": s["to"]}),
                    "{me}"
                );
                assert_eq!(st["currency"], s["currency"], "{me}");
                assert_eq!(
                    logged["statement"]["signatures"].as_array().unwrap().len(),
                    2
                );
                assert_eq!(logged["receipt"]["index"], s["index"][&me], "{me}");
                let receipt: ledger::receipt::Receipt =
                    serde_json::from_value(logged["receipt"].clone()).unwrap();
                receipt
                    .verify(&at.log_verifier())
                    .expect("the statement is in the log");
                bodies.push(logged["statement"].clone());
            }
            assert_eq!(
                bodies[0], bodies[1],
                "both brands logged the same statement"
            );
            assert!(
                int(s, "to") <= now_ms(),
                "a statement of a period that ended"
            );
        }

        // The status match: the bonus the airline granted after verifying the gym's attestation.
        let att = &report["attestation"];
        let history = node(&text(att, "verified_by"))
            .get(&format!(
                "/v1/members/{}/history",
                text(att, "bonus_member")
            ))
            .await
            .unwrap()
            .ok_json("history");
        assert!(
            history["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["entry"]["id"] == att["bonus_entry"]),
            "{history}"
        );

        // Every log verifies and replays.
        for n in &nodes {
            let summary = sdk::verify_log(
                &n.client(),
                &n.log_verifier(),
                sdk::VerifyOptions::default(),
            )
            .await;
            assert!(summary.is_ok(), "{} does not verify: {summary:?}", n.brand);
        }
        for mut n in nodes {
            let status = n.stop().await;
            assert!(status.success(), "{} stopped with {status}", n.brand);
        }
    })
    .await;
}
