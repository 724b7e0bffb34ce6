//! Multi-node tests of the federation protocol (spec/federation.md): real `loyalty-node`
//! processes that pin each other, mirror and witness each other's logs, and a fake partner
//! that misbehaves in each way a node must catch.
//!
//! Every test bounds its own time and stops what it started (nodes are killed on drop).
//! Run through the workspace: `cargo test --workspace --test federation -- --test-threads=2`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation_tests::fake_partner::{
    Behaviour, FakePartner, PeerHeaders, ADD_CHECKPOINT_PATH, TARGET_MEMBER,
};
use federation_tests::harness::{
    bounded, http_client, mirrored_member_part, now_ms, pin_all, send, start_nodes, u64_field,
    wait_until, Answer, Node, FAST_FEDERATION,
};
use ledger::attestation::Attestation;
use ledger::checkpoint::{
    open_checkpoint, CheckpointError, CosignatureSigner, NoteSignature, NoteVerifier, SignedNote,
};
use ledger::receipt::Receipt;
use ledger::witness::{verify_cosigned_checkpoint, WitnessPolicy};
use sdk::{EarnRequest, EntryKind, SetTiersRequest, Tier};
use serde_json::{json, Value};

/// Time limit of a test with three nodes and write load.
const LIMIT_LOAD: Duration = Duration::from_secs(120);
/// Time limit of a test with one or two nodes.
const LIMIT_SMALL: Duration = Duration::from_secs(90);
/// How long mirrors have to catch up after writes stop.
const CONVERGE: Duration = Duration::from_secs(60);
/// How long a node has to notice something (evidence, a cosignature, a mirrored entry).
const NOTICE: Duration = Duration::from_secs(30);

const BRANDS: [&str; 3] = ["brand-a", "brand-b", "brand-c"];

fn id(s: &str) -> sdk::EntryId {
    s.parse().unwrap()
}
fn pts(p: u64) -> sdk::Points {
    sdk::Points::new(p).unwrap()
}
fn member(s: &str) -> sdk::MemberId {
    s.parse().unwrap()
}

fn env_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    FAST_FEDERATION.iter().chain(extra).copied().collect()
}

/// The receipt of a mirrored member read (spec/federation.md §3): field `receipt`, or
/// `last_entry` as the SDK draft names it.
fn mirrored_receipt(v: &Value) -> Option<Receipt> {
    ["receipt", "last_entry"]
        .iter()
        .filter_map(|f| v.get(*f))
        .find(|r| r.is_object())
        .map(|r| serde_json::from_value(r.clone()).expect("a receipt"))
}

/// Waits until `node`'s mirror of `brand` is verified up to `size`.
async fn wait_mirrored(node: &Node, brand: &str, size: u64) {
    wait_until(
        &format!("{} mirrors {brand} up to {size}", node.brand),
        NOTICE,
        || async {
            let p = node.partner(brand).await?;
            match u64_field(&p, "verified_size")? {
                s if s == size => Ok(()),
                s => Err(format!("verified_size {s}: {p}")),
            }
        },
    )
    .await
}

/// Waits until every node's mirror of every other node is verified up to that node's size.
async fn wait_converged(nodes: &[Node]) {
    wait_until("every mirror is caught up", CONVERGE, || async {
        let mut sizes = BTreeMap::new();
        for y in nodes {
            sizes.insert(y.brand.clone(), y.log_size().await?);
        }
        for x in nodes {
            for y in nodes.iter().filter(|y| y.brand != x.brand) {
                let p = x.partner(&y.brand).await?;
                let verified = u64_field(&p, "verified_size")?;
                if verified != sizes[&y.brand] {
                    return Err(format!(
                        "{} has {} verified up to {verified} of {}: {p}",
                        x.brand, y.brand, sizes[&y.brand]
                    ));
                }
                if p["frozen"] != json!(false) {
                    return Err(format!("{} froze {}: {p}", x.brand, y.brand));
                }
            }
        }
        Ok(())
    })
    .await
}

/// Checks that `x`'s mirrored read of `m` at partner `y` equals `y`'s own read, and that its
/// receipt verifies against `y`'s pinned key, is about `m`, is `m`'s latest entry and is under
/// `y`'s latest checkpoint.
async fn check_mirrored_member(x: &Node, y: &Node, m: &str) -> Result<(), String> {
    let mirrored = x.mirrored_member(&y.brand, m).await?;
    let origin = y.member_json(m).await?;
    let part = mirrored_member_part(&mirrored);
    for (k, v) in origin.as_object().ok_or("a member is an object")? {
        if part.get(k) != Some(v) {
            return Err(format!(
                "{}'s mirror of {}/{m}: {k} is {:?}, the origin says {v}",
                x.brand,
                y.brand,
                part.get(k)
            ));
        }
    }
    let receipt = mirrored_receipt(&mirrored)
        .ok_or_else(|| format!("no receipt in the mirrored read: {mirrored}"))?;
    let verified = receipt
        .verify(&y.log_verifier())
        .map_err(|e| format!("the mirrored receipt does not verify: {e}"))?;
    if verified.entry.kind.member().map(|mm| mm.as_str()) != Some(m) {
        return Err(format!(
            "the mirrored receipt is not about {m}: {receipt:?}"
        ));
    }
    let size = y.log_size().await?;
    if verified.checkpoint.size != size {
        return Err(format!(
            "the mirrored receipt is under size {}, the origin is at {size}",
            verified.checkpoint.size
        ));
    }
    if let Some(note) = mirrored.get("checkpoint").and_then(Value::as_str) {
        let (cp, _) = open_checkpoint(note, &y.log_verifier())
            .map_err(|e| format!("the mirrored checkpoint does not verify: {e}"))?;
        if cp != verified.checkpoint {
            return Err("the receipt is not under the mirror's checkpoint".into());
        }
    }
    if let Some(v) = mirrored.get("verified_size") {
        if v != &json!(size) {
            return Err(format!(
                "the mirrored read says verified_size {v}, not {size}"
            ));
        }
    }
    let history = y
        .client()
        .history_all(&member(m))
        .await
        .map_err(|e| format!("history: {e}"))?;
    let last = history.last().map(|h| h.index);
    if last != Some(receipt.index) {
        return Err(format!(
            "the mirrored receipt is for entry {}, {m}'s latest is {last:?}",
            receipt.index
        ));
    }
    Ok(())
}

/// Every earn of a node's log: id → (member, points).
async fn logged_earns(node: &Node) -> BTreeMap<String, (String, u64)> {
    let c = node.client();
    let (cp, _) = c.verified_checkpoint().await.unwrap();
    let mut out = BTreeMap::new();
    let mut start = 0;
    while start < cp.size {
        let page = c
            .log_entries(start, (start + 1000).min(cp.size))
            .await
            .unwrap();
        assert!(!page.is_empty(), "no entries from {start}");
        for e in &page {
            let entry = sdk::Entry::from_bytes(e.entry.as_bytes()).unwrap();
            if let EntryKind::Earn(earn) = &entry.kind {
                out.insert(
                    entry.id.to_string(),
                    (earn.member.to_string(), earn.points.get()),
                );
            }
        }
        start += page.len() as u64;
    }
    out
}

// ---------------------------------------------------------------------------------
// Mirrors of real nodes
// ---------------------------------------------------------------------------------

/// Three brands pin each other and write concurrently; every mirror catches up, and a member
/// read from a mirror is what the member's own brand shows, with a receipt that verifies
/// against that brand's pinned key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brands_converge() {
    const TASKS: usize = 8;
    const WRITES_PER_TASK: u64 = 250;
    const MEMBERS: u64 = 12;
    bounded(LIMIT_LOAD, "three_brands_converge", async {
        let nodes = start_nodes(&BRANDS, FAST_FEDERATION).await;
        pin_all(&nodes).await;

        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let c = nodes[t % nodes.len()].client();
            tasks.push(tokio::spawn(async move {
                for n in 0..WRITES_PER_TASK {
                    let m = member(&format!("m{}", n % MEMBERS));
                    c.earn(
                        &m,
                        &EarnRequest::new(id(&format!("t{t}-{n}")), pts(1 + n % 7)),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("earn t{t}-{n}: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        wait_converged(&nodes).await;
        for x in &nodes {
            for y in nodes.iter().filter(|y| y.brand != x.brand) {
                for k in 0..MEMBERS {
                    check_mirrored_member(x, y, &format!("m{k}"))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                let p = x.partner(&y.brand).await.unwrap();
                assert_eq!(p["lag"], json!(0), "{p}");
                assert_eq!(p["partner_size"], p["verified_size"], "{p}");
            }
            let evidence = x.evidence().await.unwrap();
            assert!(
                evidence.is_empty(),
                "honest partners gave evidence: {evidence:?}"
            );
        }
    })
    .await
}

/// A node is killed with SIGKILL during writes and restarted on its data; the others keep
/// writing meanwhile. Everything converges and no acknowledged write is lost: each is in its
/// origin's log, and every mirror holds the origin's log (same size, same balances, receipts
/// under the origin's latest checkpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_killed_and_restarted_is_caught_up() {
    const WRITERS: usize = 6;
    const MEMBERS: u64 = 10;
    const VICTIM: usize = 2;
    bounded(
        LIMIT_LOAD,
        "partner_killed_and_restarted_is_caught_up",
        async {
            let mut nodes = start_nodes(&BRANDS, FAST_FEDERATION).await;
            pin_all(&nodes).await;

            let acked: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let origin = w % nodes.len();
                let c = nodes[origin].writer_client();
                let (acked, stop) = (acked.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let eid = format!("k{w}-{n}");
                        let m = member(&format!("m{}", n % MEMBERS));
                        match c
                            .earn(&m, &EarnRequest::new(id(&eid), pts(1 + n % 9)))
                            .await
                        {
                            Ok(_) => acked.lock().unwrap().push((origin, eid)),
                            // The victim is down, or a node is busy: not acknowledged, not checked.
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                        n += 1;
                    }
                }));
            }
            let acked_on = |i: usize| acked.lock().unwrap().iter().filter(|a| a.0 == i).count();

            tokio::time::sleep(Duration::from_millis(1500)).await;
            nodes[VICTIM].kill9();
            let before_kill = acked_on(VICTIM);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            nodes[VICTIM].start().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.unwrap();
            }
            for i in 0..nodes.len() {
                assert!(acked_on(i) > 20, "too few writes acknowledged on {i}");
            }
            assert!(
                before_kill > 0 && acked_on(VICTIM) > before_kill,
                "no writes around the kill"
            );

            wait_converged(&nodes).await;
            let acked = acked.lock().unwrap().clone();
            for (i, y) in nodes.iter().enumerate() {
                let logged = logged_earns(y).await;
                for (_, eid) in acked.iter().filter(|a| a.0 == i) {
                    assert!(
                        logged.contains_key(eid),
                        "acknowledged write {eid} is missing from {}",
                        y.brand
                    );
                }
                let mut sums: BTreeMap<String, u64> = BTreeMap::new();
                for (m, p) in logged.values() {
                    *sums.entry(m.clone()).or_default() += p;
                }
                for (m, sum) in &sums {
                    let own = y.member_json(m).await.unwrap();
                    assert_eq!(own["balance"], json!(sum), "{}'s {m}", y.brand);
                }
                let members: BTreeSet<&String> = sums.keys().collect();
                for x in nodes.iter().filter(|x| x.brand != y.brand) {
                    for m in &members {
                        check_mirrored_member(x, y, m)
                            .await
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                }
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------
// A misbehaving partner
// ---------------------------------------------------------------------------------

/// Every string inside a JSON value.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Seeds the fake's honest log: earns for two members and a redeem.
fn seed_honest_log(fake: &FakePartner) {
    for i in 0..12 {
        let m = if i % 2 == 0 { TARGET_MEMBER } else { "bob" };
        fake.append_earn(m, 10 + i);
    }
    fake.append(EntryKind::Redeem(ledger::entry::Redeem {
        member: member(TARGET_MEMBER),
        points: pts(5),
    }));
}

/// A node mirrors the fake's honest log; then the fake misbehaves. The node must store evidence
/// of the right kind and keep none of the bad data. Proven misbehaviour (a fork: two validly
/// signed checkpoints that conflict; an invalid entry under a valid checkpoint) freezes the
/// partnership (partners list, metric, peer requests refused, no more fetching), and unfreezing
/// lifts the freeze, keeps the evidence and lets the honest log be mirrored again. Anything else
/// (a bad signature, a shrink, entries that do not match the root), which a proxy on the path
/// could produce, is recorded once as unproven evidence, counted and retried with backoff, and
/// never freezes: once the honest log is served again, it is mirrored without an operator
/// (issue 13, item 6).
async fn misbehaving_partner_is_caught(behaviour: Behaviour) {
    let kind = behaviour.evidence_kind().expect("a misbehaviour");
    bounded(LIMIT_SMALL, kind, async {
        let fake = FakePartner::start("fake").await;
        seed_honest_log(&fake);
        let node = Node::start_new("brand-a", FAST_FEDERATION).await;
        let a = node
            .pin(fake.brand(), fake.url(), &fake.verifier_key())
            .await;
        assert!(a.is_success(), "pinning the fake: {} {}", a.status, a.text);
        let n = fake.size();
        wait_mirrored(&node, fake.brand(), n).await;
        let before = node
            .mirrored_member(fake.brand(), TARGET_MEMBER)
            .await
            .unwrap();
        assert_eq!(
            mirrored_member_part(&before)["balance"],
            json!(fake.balance(TARGET_MEMBER)),
            "{before}"
        );
        assert!(node.evidence().await.unwrap().is_empty());
        let frozen_metric = [("brand", fake.brand())];
        assert_eq!(
            node.metric("loyalty_partner_frozen", &frozen_metric)
                .await
                .unwrap(),
            Some(0.0)
        );
        let accepted_note = fake.honest_note();

        fake.set_behaviour(behaviour);
        let bad_note = fake.served_note();
        let evidence = wait_until(
            &format!("evidence {kind} against the fake"),
            NOTICE,
            || async {
                let e = node.evidence().await?;
                if e.is_empty() {
                    let p = node.partner(fake.brand()).await?;
                    return Err(format!("no evidence yet; partner: {p}"));
                }
                Ok(e)
            },
        )
        .await;
        assert_eq!(evidence.len(), 1, "{evidence:?}");
        let e = &evidence[0];
        assert_eq!(e["brand"], json!(fake.brand()), "{e}");
        assert_eq!(e["kind"], json!(kind), "{e}");
        assert!(
            strings(e).iter().any(|s| s.contains(&bad_note)),
            "the evidence does not keep the bad note {bad_note:?}: {e}"
        );
        if matches!(behaviour, Behaviour::Fork | Behaviour::Shrink) {
            assert!(
                strings(e).iter().any(|s| s.contains(&accepted_note)),
                "the evidence does not keep the accepted note: {e}"
            );
        }

        let proven = matches!(behaviour, Behaviour::Fork | Behaviour::InvalidEntry);
        assert_eq!(e["proven"], json!(proven), "{e}");
        if !proven {
            // Recorded, not frozen; retried with backoff; the same bad data is stored once.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let p = node.partner(fake.brand()).await.unwrap();
            assert_eq!(p["frozen"], json!(false), "{p}");
            assert_eq!(p["verified_size"], json!(n), "{p}");
            assert!(
                p["last_error"]
                    .as_str()
                    .is_some_and(|m| m.contains("unproven")),
                "{p}"
            );
            assert_eq!(
                node.metric("loyalty_partner_frozen", &frozen_metric)
                    .await
                    .unwrap(),
                Some(0.0)
            );
            let counted = node
                .metric(
                    "loyalty_evidence_total",
                    &[("brand", fake.brand()), ("kind", kind)],
                )
                .await
                .unwrap();
            assert!(counted.is_some_and(|c| c >= 1.0), "loyalty_evidence_total");
            assert_eq!(node.evidence().await.unwrap(), evidence, "stored again");
            let after = node
                .mirrored_member(fake.brand(), TARGET_MEMBER)
                .await
                .unwrap();
            assert_eq!(after, before, "the mirrored member changed");
            let a = fake.add_checkpoint(&node.url, &node.brand, 0).await;
            assert_ne!(a.status, 403, "peer requests refused: {}", a.text);
            // Honest again: mirrored without any operator action.
            fake.set_behaviour(Behaviour::Honest);
            for i in 0..5 {
                fake.append_earn(TARGET_MEMBER, 1 + i);
            }
            wait_mirrored(&node, fake.brand(), n + 5).await;
            let p = node.partner(fake.brand()).await.unwrap();
            assert_eq!(p["frozen"], json!(false), "{p}");
            assert_eq!(node.evidence().await.unwrap(), evidence);
            return;
        }

        // Frozen, and nothing of the bad data is in the mirror.
        let p = node.partner(fake.brand()).await.unwrap();
        assert_eq!(p["frozen"], json!(true), "{p}");
        assert_eq!(p["verified_size"], json!(n), "{p}");
        let after = node
            .mirrored_member(fake.brand(), TARGET_MEMBER)
            .await
            .unwrap();
        assert_eq!(after, before, "the mirrored member changed");
        assert_eq!(
            node.metric("loyalty_partner_frozen", &frozen_metric)
                .await
                .unwrap(),
            Some(1.0)
        );
        let counted = node
            .metric(
                "loyalty_evidence_total",
                &[("brand", fake.brand()), ("kind", kind)],
            )
            .await
            .unwrap();
        assert_eq!(counted, Some(1.0), "loyalty_evidence_total");

        // A frozen partner's peer requests are refused, and nothing more is fetched from it.
        let a = fake.add_checkpoint(&node.url, &node.brand, 0).await;
        a.assert_problem(403, "partner_frozen", "peer request of a frozen partner");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let served = fake.requests().len();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let later = fake.requests();
        assert_eq!(
            later.len(),
            served,
            "the node kept talking to a frozen partner: {:?}",
            &later[served..]
        );
        assert_eq!(node.evidence().await.unwrap().len(), 1);

        // Unfreezing lifts the freeze; the evidence stays; the honest log is mirrored again.
        fake.set_behaviour(Behaviour::Honest);
        let a = node
            .post_json(
                &format!("/v1/admin/partners/{}/unfreeze", fake.brand()),
                &json!({}),
            )
            .await
            .unwrap();
        assert!(a.is_success(), "unfreeze: {} {}", a.status, a.text);
        let p = node.partner(fake.brand()).await.unwrap();
        assert_eq!(p["frozen"], json!(false), "{p}");
        assert_eq!(
            node.metric("loyalty_partner_frozen", &frozen_metric)
                .await
                .unwrap(),
            Some(0.0)
        );
        for i in 0..5 {
            fake.append_earn(TARGET_MEMBER, 1 + i);
        }
        wait_mirrored(&node, fake.brand(), n + 5).await;
        let m = node
            .mirrored_member(fake.brand(), TARGET_MEMBER)
            .await
            .unwrap();
        assert_eq!(
            mirrored_member_part(&m)["balance"],
            json!(fake.balance(TARGET_MEMBER)),
            "{m}"
        );
        let kept = node.evidence().await.unwrap();
        assert_eq!(kept, evidence, "the evidence changed after unfreezing");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_fork_is_evidence_and_freezes() {
    misbehaving_partner_is_caught(Behaviour::Fork).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_forged_signature_is_unproven_evidence_and_retried() {
    misbehaving_partner_is_caught(Behaviour::ForgedSignature).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_rewritten_entry_is_unproven_evidence_and_retried() {
    misbehaving_partner_is_caught(Behaviour::RewrittenEntry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_shrinking_tree_is_unproven_evidence_and_retried() {
    misbehaving_partner_is_caught(Behaviour::Shrink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_invalid_entry_is_evidence_and_freezes() {
    misbehaving_partner_is_caught(Behaviour::InvalidEntry).await;
}

/// A small HTTP server on loopback answering every request with `answer`; counts requests.
async fn canned_server(
    answer: fn(u16) -> axum::response::Response,
    meta_port: u16,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            answer(meta_port)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

fn some_verifier_key(name: &str) -> String {
    ledger::checkpoint::NoteSigner::from_seed(name, &[9u8; 32])
        .unwrap()
        .verifier_key_string()
}

/// Issue 13 items 5, 6 and 10: partner traffic follows no redirect (a partner URL must not
/// reach another host, such as a cloud metadata service, with the peer headers); what a partner
/// answers is never republished on the public explorer (errors are a status and a fixed
/// message, an answer that is not a checkpoint note is kept as a digest) and does not freeze
/// the partner; a partner URL with credentials, or plain http to a host that is not loopback,
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_answers_and_urls_are_not_published() {
    use axum::response::IntoResponse;
    bounded(LIMIT_SMALL, "partner_answers_and_urls", async {
        let (meta, meta_hits) = canned_server(|_| "SECRET-METADATA-TOKEN".into_response(), 0).await;
        let meta_port: u16 = meta.rsplit(':').next().unwrap().parse().unwrap();
        let (redirector, _) = canned_server(
            |port| {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        format!("http://127.0.0.1:{port}/latest/meta-data"),
                    )],
                )
                    .into_response()
            },
            meta_port,
        )
        .await;
        let (garbage, garbage_hits) =
            canned_server(|_| "<html>SECRET-GARBAGE-TOKEN</html>".into_response(), 0).await;
        let node = Node::start_new("brand-a", FAST_FEDERATION).await;
        let a = node
            .pin(
                "redir",
                &redirector,
                &some_verifier_key("example.org/redir"),
            )
            .await;
        assert!(a.is_success(), "{} {}", a.status, a.text);
        let a = node
            .pin(
                "garbage",
                &garbage,
                &some_verifier_key("example.org/garbage"),
            )
            .await;
        assert!(a.is_success(), "{} {}", a.status, a.text);

        // Garbage at /checkpoint: unproven evidence, kept as a digest; not frozen.
        let evidence = wait_until("evidence against garbage", NOTICE, || async {
            let e = node.evidence().await?;
            e.into_iter()
                .find(|e| e["brand"] == json!("garbage"))
                .ok_or_else(|| "no evidence yet".to_string())
        })
        .await;
        assert_eq!(evidence["kind"], json!("bad_signature"), "{evidence}");
        assert_eq!(evidence["proven"], json!(false), "{evidence}");
        assert!(
            evidence["notes"][0]
                .as_str()
                .is_some_and(|n| n.starts_with("sha256:")),
            "{evidence}"
        );
        wait_until("the redirect is reported", NOTICE, || async {
            let p = node.partner("redir").await?;
            match p["last_error"].as_str() {
                Some(m) if m.contains("302") => Ok(()),
                _ => Err(format!("{p}")),
            }
        })
        .await;
        // A few more rounds (with backoff).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(garbage_hits.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            meta_hits.load(Ordering::SeqCst),
            0,
            "a partner's redirect was followed"
        );
        for p in ["redir", "garbage"] {
            let p = node.partner(p).await.unwrap();
            assert_eq!(p["frozen"], json!(false), "{p}");
        }
        let http = http_client();
        for path in [
            "/explorer/partners",
            "/explorer/partners/garbage",
            "/explorer/checkpoints",
        ] {
            let page = send(http.get(format!("{}{path}", node.url))).await.unwrap();
            assert_eq!(page.status, 200, "{path}");
            assert!(
                !page.text.contains("SECRET"),
                "{path} republishes an answer"
            );
        }
        for path in ["/v1/partners", "/v1/evidence"] {
            let a = node.get(path).await.unwrap();
            assert!(!a.text.contains("SECRET"), "{path}: {}", a.text);
        }

        // Credentials in a partner URL, and plain http to a host that is not loopback.
        let key = some_verifier_key("example.org/c");
        for url in [
            format!(
                "http://user:hunter2@{}",
                redirector.trim_start_matches("http://")
            ),
            "http://192.0.2.7:7700".to_string(),
            "http://partner.example:7700".to_string(),
        ] {
            let a = node.pin("creds", &url, &key).await;
            a.assert_problem(422, "invalid_partner", &url);
        }
        assert!(node.partner("creds").await.is_err());
        let page = send(http.get(format!("{}/explorer/partners", node.url)))
            .await
            .unwrap();
        assert!(!page.text.contains("hunter2"));
    })
    .await
}

// ---------------------------------------------------------------------------------
// Signed peer requests and witnessing
// ---------------------------------------------------------------------------------

/// Checks a witness's `200` answer: one cosignature line, of the witness key derived from the
/// node's log key, over `note`'s text, with a recent timestamp.
fn check_cosignature(a: &Answer, note: &str, witness: &NoteVerifier) {
    assert_eq!(a.status, 200, "add-checkpoint: {}", a.text);
    assert!(
        a.content_type.starts_with("text/x.tlog.cosignature"),
        "cosignature served as {:?}",
        a.content_type
    );
    let lines: Vec<&str> = a.text.lines().collect();
    assert_eq!(lines.len(), 1, "one cosignature line: {:?}", a.text);
    let sig = NoteSignature::parse_line(lines[0]).expect("a signature line");
    let text = SignedNote::parse(note).unwrap().text;
    let t = witness
        .verify_cosignature(&text, &sig)
        .expect("the cosignature verifies with the node's witness key");
    let now_s = now_ms() / 1000;
    assert!(t.abs_diff(now_s) < 600, "cosignature time {t}, now {now_s}");
}

/// Signed add-checkpoint requests from a pinned partner are cosigned; replayed, stale, future,
/// unknown, unpinned, wrongly signed, misdirected, altered and unsigned ones are refused with
/// 401 and the §2 codes, and refusing them changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_refused() {
    bounded(LIMIT_SMALL, "peer_requests_refused", async {
        let fake = FakePartner::start("fake").await;
        let stranger = FakePartner::start("stranger").await;
        for i in 0..5 {
            fake.append_earn(TARGET_MEMBER, 1 + i);
            stranger.append_earn("bob", 1 + i);
        }
        let node = Node::start_new("brand-a", FAST_FEDERATION).await;
        let a = node
            .pin(fake.brand(), fake.url(), &fake.verifier_key())
            .await;
        assert!(a.is_success(), "pinning the fake: {} {}", a.status, a.text);
        let witness = node.witness_verifier();

        // A fresh witness cosigns from size 0.
        let n1 = fake.size();
        let a = fake.add_checkpoint(&node.url, &node.brand, 0).await;
        check_cosignature(&a, &fake.honest_note(), &witness);

        // A consistent larger checkpoint is cosigned; the same request again is a replay.
        fake.append_earn(TARGET_MEMBER, 7);
        fake.append_earn("bob", 8);
        let n2 = fake.size();
        let body = fake.add_checkpoint_body(n1);
        let h = fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, body.as_bytes());
        let a = fake
            .post_peer(&node.url, ADD_CHECKPOINT_PATH, &body, Some(&h))
            .await;
        check_cosignature(&a, &fake.honest_note(), &witness);
        let a = fake
            .post_peer(&node.url, ADD_CHECKPOINT_PATH, &body, Some(&h))
            .await;
        a.assert_problem(401, "peer_replayed", "the same nonce twice");

        // Every refusal below carries a valid, consistent checkpoint of size n3.
        fake.append_earn(TARGET_MEMBER, 9);
        let body = fake.add_checkpoint_body(n2);
        let bytes = body.as_bytes();
        let sign_at = |time_ms: u64| {
            PeerHeaders::sign(
                fake.signing_key(),
                fake.brand(),
                &node.brand,
                "POST",
                ADD_CHECKPOINT_PATH,
                bytes,
                time_ms,
                federation_tests::fake_partner::random_nonce(),
            )
        };
        let other_key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let mut refusals: Vec<(&str, Option<PeerHeaders>, &str)> = Vec::new();
        refusals.push(("no headers", None, "peer_unsigned"));
        let mut h = fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, bytes);
        h.nonce.pop();
        refusals.push(("a 31-digit nonce", Some(h), "peer_unsigned"));
        let mut h = fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, bytes);
        h.time = "soon".into();
        refusals.push(("a time that is not a number", Some(h), "peer_unsigned"));
        let mut h = fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, bytes);
        h.signature = "not base64!".into();
        refusals.push(("a signature that is not base64", Some(h), "peer_unsigned"));
        refusals.push((
            "a time 10 minutes old",
            Some(sign_at(now_ms() - 600_000)),
            "peer_stale",
        ));
        refusals.push((
            "a time 10 minutes ahead",
            Some(sign_at(now_ms() + 600_000)),
            "peer_stale",
        ));
        refusals.push((
            "a sender that is not a partner",
            Some(stranger.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, bytes)),
            "unknown_peer",
        ));
        refusals.push((
            "another key",
            Some(PeerHeaders::sign(
                &other_key,
                fake.brand(),
                &node.brand,
                "POST",
                ADD_CHECKPOINT_PATH,
                bytes,
                now_ms(),
                federation_tests::fake_partner::random_nonce(),
            )),
            "peer_bad_signature",
        ));
        refusals.push((
            "signed for another receiver",
            Some(fake.peer_headers("brand-z", "POST", ADD_CHECKPOINT_PATH, bytes)),
            "peer_bad_signature",
        ));
        refusals.push((
            "signed for another body",
            Some(fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, b"old 0\n\n")),
            "peer_bad_signature",
        ));
        refusals.push((
            "signed for another path",
            Some(fake.peer_headers(
                &node.brand,
                "POST",
                &format!("{ADD_CHECKPOINT_PATH}?x=1"),
                bytes,
            )),
            "peer_bad_signature",
        ));
        refusals.push((
            "signed for another method",
            Some(fake.peer_headers(&node.brand, "PUT", ADD_CHECKPOINT_PATH, bytes)),
            "peer_bad_signature",
        ));
        for (what, h, code) in &refusals {
            let a = fake
                .post_peer(&node.url, ADD_CHECKPOINT_PATH, &body, h.as_ref())
                .await;
            a.assert_problem(401, code, what);
        }

        // A partner listed without a key is unpinned: still unknown.
        let a = node
            .post_json(
                "/v1/admin/partners",
                &json!({"brand": stranger.brand(), "url": stranger.url()}),
            )
            .await
            .unwrap();
        assert!(
            a.is_success(),
            "listing an unpinned partner: {} {}",
            a.status,
            a.text
        );
        let sbody = stranger.add_checkpoint_body(0);
        let h = stranger.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, sbody.as_bytes());
        let a = stranger
            .post_peer(&node.url, ADD_CHECKPOINT_PATH, &sbody, Some(&h))
            .await;
        a.assert_problem(401, "unknown_peer", "an unpinned partner");

        // None of the refused requests acted: the witness still expects `old n2` (a request
        // that had been acted on would have moved it to n3), and says so for a wrong `old`.
        let n3 = fake.size();
        let a = fake.add_checkpoint(&node.url, &node.brand, 1).await;
        assert_eq!(a.status, 409, "a wrong old size: {}", a.text);
        assert!(
            a.content_type.starts_with("text/x.tlog.size"),
            "409 served as {:?}",
            a.content_type
        );
        assert_eq!(a.text.trim(), n2.to_string(), "the witness's latest size");
        let a = fake.add_checkpoint(&node.url, &node.brand, n2).await;
        check_cosignature(&a, &fake.honest_note(), &witness);
        assert!(n3 > n2);
        assert!(node.evidence().await.unwrap().is_empty());
    })
    .await
}

/// The latest cosigned checkpoint of a node: the note of `GET /v1/checkpoint/cosigned`, served
/// as the note itself or as JSON with a `note` (or `checkpoint`) field.
async fn cosigned_note(node: &Node) -> Result<String, String> {
    let a = node.get("/v1/checkpoint/cosigned").await?;
    if a.status != 200 {
        return Err(format!("/v1/checkpoint/cosigned: {} {}", a.status, a.text));
    }
    if a.content_type.starts_with("application/json") {
        let v = a.json()?;
        return ["note", "checkpoint"]
            .iter()
            .find_map(|f| v.get(*f).and_then(Value::as_str))
            .map(str::to_owned)
            .ok_or_else(|| format!("no note in {v}"));
    }
    Ok(a.text)
}

/// Three nodes witness each other: A's cosigned checkpoint eventually carries B's and C's
/// cosignatures for A's latest size, which a 2-of-2 policy of their derived witness keys
/// accepts and a 3-of-3 policy with a third, unrelated witness refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigned_checkpoint_quorum() {
    bounded(LIMIT_LOAD, "cosigned_checkpoint_quorum", async {
        let env = env_with(&[("LOYALTY_WITNESS_QUORUM", "2")]);
        let nodes = start_nodes(&BRANDS, &env).await;
        pin_all(&nodes).await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let client = a.client();
        for i in 0..20 {
            client
                .earn(
                    &member("alice"),
                    &EarnRequest::new(id(&format!("e{i}")), pts(5)),
                )
                .await
                .unwrap();
        }
        let size = a.log_size().await.unwrap();
        let two = WitnessPolicy {
            log: a.log_verifier(),
            witnesses: vec![b.witness_verifier(), c.witness_verifier()],
            quorum: 2,
        };
        let note = wait_until("A's checkpoint cosigned by B and C", NOTICE, || async {
            let note = cosigned_note(a).await?;
            let v = verify_cosigned_checkpoint(&note, &two).map_err(|e| format!("{e}: {note}"))?;
            match v.checkpoint.size {
                s if s == size => Ok(note),
                s => Err(format!("cosigned size {s}, want {size}")),
            }
        })
        .await;
        let v = verify_cosigned_checkpoint(&note, &two).unwrap();
        let now_s = now_ms() / 1000;
        for w in &v.cosignatures {
            assert!(w.timestamp.abs_diff(now_s) < 600, "{w:?}");
        }
        // With a quorum of 2 (LOYALTY_WITNESS_QUORUM), B's and C's cosignatures make it final
        // (the JSON fields of spec/api.md, when the route serves JSON).
        let answer = a.get("/v1/checkpoint/cosigned").await.unwrap();
        if answer.content_type.starts_with("application/json") {
            let j = answer.ok_json("GET /v1/checkpoint/cosigned");
            if j["size"] == json!(size) {
                assert_eq!(j["final"], json!(true), "{j}");
                let names: BTreeSet<&str> = j["cosigners"]
                    .as_array()
                    .expect("cosigners")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert_eq!(
                    names,
                    BTreeSet::from([b.origin.as_str(), c.origin.as_str()]),
                    "{j}"
                );
            }
        }
        // The note is A's own checkpoint of that size.
        let cps = client.checkpoints(None, Some(1000)).await.unwrap();
        let own = cps
            .checkpoints
            .iter()
            .find(|x| x.size == size)
            .expect("A's checkpoint of that size");
        assert_eq!(
            SignedNote::parse(&own.note).unwrap().text,
            v.note.text,
            "the cosigned note is A's checkpoint"
        );

        // A third witness no node knows (a fixed seed keeps the test deterministic).
        let third = CosignatureSigner::from_seed("loyalty.example/brand-z", &[9; 32])
            .unwrap()
            .verifier();
        let three = WitnessPolicy {
            witnesses: vec![b.witness_verifier(), c.witness_verifier(), third],
            quorum: 3,
            ..two.clone()
        };
        assert_eq!(
            verify_cosigned_checkpoint(&note, &three).unwrap_err(),
            CheckpointError::QuorumNotMet { got: 2, need: 3 }
        );
        // A log key is not a witness key: the witness key is derived (type 0x04).
        let wrong = WitnessPolicy {
            witnesses: vec![b.log_verifier()],
            quorum: 1,
            ..two
        };
        assert!(verify_cosigned_checkpoint(&note, &wrong).is_err());
    })
    .await
}

// ---------------------------------------------------------------------------------
// Tier attestations
// ---------------------------------------------------------------------------------

/// A tier attestation from A verifies offline (the brand's key, its witnesses' cosignatures,
/// the inclusion proof, the entry's fields) and at B; tampering with the tier, the valid-until
/// time, the brand or a proof hash makes it fail in both places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_offline() {
    const DAY_MS: u64 = 86_400_000;
    bounded(LIMIT_LOAD, "attestation_offline", async {
        let env = env_with(&[("LOYALTY_WITNESS_QUORUM", "1")]);
        let nodes = start_nodes(&BRANDS, &env).await;
        pin_all(&nodes).await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let client = a.client();
        client
            .set_tiers(&SetTiersRequest {
                id: id("pol-tier"),
                tiers: vec![
                    Tier {
                        name: "blue".parse().unwrap(),
                        threshold: 0,
                    },
                    Tier {
                        name: "gold".parse().unwrap(),
                        threshold: 1000,
                    },
                ],
                window_ms: sdk::DurationMs::new(365 * DAY_MS).unwrap(),
                grace_ms: sdk::DurationMs::new(30 * DAY_MS).unwrap(),
            })
            .await
            .unwrap();
        let alice = member("alice");
        client
            .earn(&alice, &EarnRequest::new(id("e1"), pts(1200)))
            .await
            .unwrap();
        let tier_valid_until = wait_until("alice is gold", NOTICE, || async {
            let m = client.member(&alice).await.map_err(|e| e.to_string())?;
            match (m.tier.as_ref().map(|t| t.as_str()), m.tier_valid_until) {
                (Some("gold"), Some(u)) => Ok(u.get()),
                other => Err(format!("tier {other:?}")),
            }
        })
        .await;

        // A read key cannot make the node write (issue 13, item 8): the read route of old
        // is gone, and the write route needs a write scope. Nothing is logged by either.
        let read_key = a
            .post_json(
                "/v1/admin/keys",
                &json!({"name": "reader", "scopes": ["read"]}),
            )
            .await
            .unwrap()
            .ok_json("create a read key")["key"]
            .as_str()
            .expect("the new key")
            .to_owned();
        let size = a.log_size().await.unwrap();
        let http = http_client();
        let url = format!("{}/v1/members/alice/attestation", a.url);
        let got = send(http.get(&url).bearer_auth(&read_key)).await.unwrap();
        assert_eq!(got.status, 405, "GET attestation: {}", got.text);
        let posted = send(http.post(&url).bearer_auth(&read_key)).await.unwrap();
        posted.assert_problem(403, "forbidden", "POST attestation with a read key");
        assert_eq!(
            a.log_size().await.unwrap(),
            size,
            "a read key made the node write"
        );

        let answer = a
            .post_json("/v1/members/alice/attestation", &json!({}))
            .await
            .unwrap()
            .ok_json("POST attestation");
        let att: Attestation =
            serde_json::from_value(answer.clone()).expect("an attestation of the §6 shape");
        let s = &att.statement;
        assert_eq!(s.brand.as_str(), "brand-a");
        assert_eq!(s.member.as_str(), "alice");
        assert_eq!(s.tier.as_str(), "gold");
        let valid_until = s.valid_until.expect("gold is held until a time").get();
        assert!(
            valid_until > now_ms() && valid_until <= tier_valid_until,
            "{s:?}"
        );

        // Offline, with nothing but A's pinned key and the witnesses' keys.
        let policy = WitnessPolicy {
            log: a.log_verifier(),
            witnesses: vec![b.witness_verifier(), c.witness_verifier()],
            quorum: 1,
        };
        let brand_a: sdk::BrandId = "brand-a".parse().unwrap();
        let now = || Some(sdk::LogTime::new(now_ms()).unwrap());
        let verified = ledger::attestation::verify(&att, &brand_a, &policy, now())
            .expect("the attestation verifies offline");
        assert!(!verified.cosignatures.is_empty());
        let entry = Receipt::verify(&att.receipt, &a.log_verifier())
            .unwrap()
            .entry;
        assert_eq!(entry.kind.type_name(), "tier_attestation");
        assert!(
            entry.id.as_str().starts_with("sys.attest.") && entry.id.as_str().len() == 43,
            "{}",
            entry.id
        );

        // Asking again logs nothing new.
        let again: Attestation = serde_json::from_value(
            a.post_json("/v1/members/alice/attestation", &json!({}))
                .await
                .unwrap()
                .ok_json("POST attestation again"),
        )
        .unwrap();
        assert_eq!(again.receipt.index, att.receipt.index);
        assert_eq!(again.statement, att.statement);

        // B verifies it with its pinned keys and witness policy.
        let at_b = b
            .post_json("/v1/attestations/verify", &answer)
            .await
            .unwrap();
        assert_eq!(
            at_b.status, 200,
            "B refused a valid attestation: {}",
            at_b.text
        );

        // Tampered copies fail offline and at B.
        let mut tampered: Vec<(&str, Value)> = Vec::new();
        let mut t = answer.clone();
        t["statement"]["tier"] = json!("platinum");
        tampered.push(("tier", t));
        let mut t = answer.clone();
        t["statement"]["valid_until"] = json!(valid_until + DAY_MS);
        tampered.push(("valid_until", t));
        let mut t = answer.clone();
        t["statement"]["brand"] = json!("brand-c");
        tampered.push(("brand", t));
        let mut t = answer.clone();
        let h = t["receipt"]["inclusion_proof"][0]
            .as_str()
            .expect("a proof hash")
            .to_owned();
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        t["receipt"]["inclusion_proof"][0] = json!(format!("{flipped}{}", &h[1..]));
        tampered.push(("proof hash", t));
        for (what, t) in &tampered {
            let offline = serde_json::from_value::<Attestation>(t.clone())
                .map_err(|e| e.to_string())
                .and_then(|att| {
                    ledger::attestation::verify(&att, &brand_a, &policy, now())
                        .map_err(|e| e.to_string())
                });
            assert!(offline.is_err(), "a tampered {what} verifies offline");
            let r = b.post_json("/v1/attestations/verify", t).await.unwrap();
            assert_eq!(r.status, 422, "B on a tampered {what}: {}", r.text);
        }
    })
    .await
}

/// A partner that shows its mirror one history and its witness another (a split view) is
/// caught by the witness: the checkpoint it asks to cosign contradicts the entries the mirror
/// verified, so nothing is cosigned, `fork` evidence (proven) is stored and the partnership
/// is frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_view_between_mirror_and_witness_is_caught() {
    bounded(LIMIT_SMALL, "split_view", async {
        let fake = FakePartner::start("fake").await;
        seed_honest_log(&fake);
        let node = Node::start_new("brand-a", FAST_FEDERATION).await;
        let a = node
            .pin(fake.brand(), fake.url(), &fake.verifier_key())
            .await;
        assert!(a.is_success(), "pinning the fake: {} {}", a.status, a.text);
        let n = fake.size();
        wait_mirrored(&node, fake.brand(), n).await;

        // A checkpoint of the mirrored size with another root, correctly signed by the fake,
        // offered only to the witness.
        let signer =
            ledger::checkpoint::NoteSigner::new(fake.origin(), fake.signing_key().clone()).unwrap();
        let forked = ledger::checkpoint::Checkpoint {
            origin: fake.origin().to_owned(),
            size: n,
            root: [7; 32],
            extensions: Vec::new(),
        };
        let note = ledger::checkpoint::sign_checkpoint(&forked, &signer)
            .unwrap()
            .to_string();
        let body = federation_tests::fake_partner::add_checkpoint_body(0, &[], &note);
        let h = fake.peer_headers(&node.brand, "POST", ADD_CHECKPOINT_PATH, body.as_bytes());
        let a = fake
            .post_peer(&node.url, ADD_CHECKPOINT_PATH, &body, Some(&h))
            .await;
        a.assert_problem(422, "inconsistent_checkpoint", "a split view");
        let e = node.evidence().await.unwrap();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["kind"], json!("fork"));
        assert_eq!(e[0]["proven"], json!(true));
        assert!(strings(&e[0]).iter().any(|s| *s == note));
        let p = node.partner(fake.brand()).await.unwrap();
        assert_eq!(p["frozen"], json!(true), "{p}");
        assert_eq!(u64_field(&p, "verified_size"), Ok(n));

        // Frozen: the honest checkpoint is not cosigned either.
        let a = fake.add_checkpoint(&node.url, &node.brand, 0).await;
        a.assert_problem(403, "partner_frozen", "a frozen partner");
    })
    .await;
}
