//! Integration tests of one brand node: the real `loyalty-node` binary on loopback, driven
//! through the SDK (every route), a catalog of bad inputs, kill -9 under write load, backup
//! and restore, the write queue limit, and clean shutdown.

mod harness;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::Node;
use sdk::{
    AdjustRequest, AuthoriseRequest, CreateKeyRequest, Direction, EarnItem, EarnOutcome,
    EarnRequest, EntryKind, ErrorCode, HexBytes, HexHash, HoldRequest, PostRequest, RedeemRequest,
    RefundRequest, RetryPolicy, Scope, SetExpiryRequest, SetFxRateRequest, SetRateCardRequest,
    SetTiersRequest, Tier, VerifyOptions, VoidRequest, WriteStatus,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn id(s: &str) -> sdk::EntryId {
    s.parse().unwrap()
}
fn pts(p: u64) -> sdk::Points {
    sdk::Points::new(p).unwrap()
}
fn member(s: &str) -> sdk::MemberId {
    s.parse().unwrap()
}
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
fn time(ms: u64) -> sdk::LogTime {
    sdk::LogTime::new(ms).unwrap()
}

fn code_of(e: &sdk::Error) -> Option<ErrorCode> {
    match e {
        sdk::Error::Api { code, .. } => Some(code.clone()),
        _ => None,
    }
}

/// The store's metrics: the log's size, and its memory by RocksDB's estimates (its memtables
/// hold the test's writes).
fn assert_store_metrics(metrics: &str) {
    assert!(metrics.contains("loyalty_log_size_entries"));
    let memtables = metrics
        .lines()
        .find(|l| l.starts_with("loyalty_store_memory_bytes{part=\"memtables\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("loyalty_store_memory_bytes{part=\"memtables\"}");
    assert!(memtables > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_through_the_sdk() {
    let node = Node::start_new("brand-a", &[]);
    let c = node.client();
    let alice = member("alice");

    // Policies first, so that lots expire and tiers apply.
    c.set_expiry(&SetExpiryRequest {
        id: id("pol-exp"),
        lot_lifetime_ms: Some(sdk::DurationMs::new(365 * 86_400_000).unwrap()),
    })
    .await
    .unwrap();
    c.set_tiers(&SetTiersRequest {
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
        window_ms: sdk::DurationMs::new(365 * 86_400_000).unwrap(),
        grace_ms: sdk::DurationMs::new(30 * 86_400_000).unwrap(),
    })
    .await
    .unwrap();
    c.set_rate_card(&SetRateCardRequest {
        id: id("pol-rate"),
        currency: "EUR".parse().unwrap(),
        point_value: "0.01".parse().unwrap(),
        valid_from: time(now_ms() + 60_000),
    })
    .await
    .unwrap();
    let policy = c.policy().await.unwrap();
    assert!(policy.tier.is_some() && policy.expiry.is_some());
    assert_eq!(policy.rate_cards.len(), 1);

    // Earn, idempotently.
    let w = c
        .earn(&alice, &EarnRequest::new(id("e1"), pts(1200)))
        .await
        .unwrap();
    assert_eq!(w.status, WriteStatus::Appended);
    assert!(
        w.checkpoint.is_some(),
        "the receipt was verified against the pinned key"
    );
    let again = c
        .earn(&alice, &EarnRequest::new(id("e1"), pts(1200)))
        .await
        .unwrap();
    assert_eq!(again.status, WriteStatus::Existing);
    assert_eq!(again.index, w.index);

    // The batch path: one request, one commit; each earn logged or refused on its own.
    let mut items: Vec<EarnItem> = (0..3)
        .map(|k| {
            EarnItem::new(
                member(&format!("bulk-{k}")),
                id(&format!("be-{k}")),
                pts(10 + k),
            )
        })
        .collect();
    items.push(EarnItem::new(alice.clone(), id("e1"), pts(1200)));
    items.push(EarnItem::new(alice.clone(), id("e1b"), pts(5)));
    items.push(EarnItem::new(member("bulk-0"), id("pol-exp"), pts(7)));
    let many = c.earn_many(&items).await.unwrap();
    assert_eq!(many.results.len(), 6);
    let logged: Vec<u64> = many
        .results
        .iter()
        .filter_map(|o| match o {
            EarnOutcome::Logged {
                status: WriteStatus::Appended,
                index,
            } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(logged.len(), 4, "{:?}", many.results);
    assert!(logged.windows(2).all(|w| w[0] < w[1]), "in request order");
    assert_eq!(
        many.results[3],
        EarnOutcome::Logged {
            status: WriteStatus::Existing,
            index: w.index
        }
    );
    match &many.results[5] {
        EarnOutcome::Refused { status, code, .. } => {
            assert_eq!(
                (*status, code.as_str()),
                (409, "id_conflict"),
                "{:?}",
                many.results[5]
            );
        }
        other => panic!("an id reused with another body is refused, not {other:?}"),
    }
    for (k, index) in logged.iter().enumerate().take(3) {
        let r = c.entry_receipt(*index).await.unwrap();
        assert!(r.entry.contains(&format!("be-{k}")), "{}", r.entry);
    }
    let again = c.earn_many(&items[..3]).await.unwrap();
    assert!(again.results.iter().zip(&logged).all(|(o, i)| *o
        == EarnOutcome::Logged {
            status: WriteStatus::Existing,
            index: *i
        }));
    assert_eq!(c.member(&member("bulk-2")).await.unwrap().balance, 12);

    // The node upgrades alice at once: the tier change follows the earn.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.member(&alice).await.unwrap();
        if m.tier.as_ref().map(|t| t.as_str()) == Some("gold") {
            assert!(m.tier_valid_until.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "no tier upgrade logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redeem and refund.
    c.redeem(&alice, &RedeemRequest::new(id("r1"), pts(200)))
        .await
        .unwrap();
    c.refund(
        &id("r1"),
        &RefundRequest {
            id: id("f1"),
            points: pts(50),
        },
    )
    .await
    .unwrap();

    // Holds: post one (with a condition), void another.
    let preimage = b"open sesame".to_vec();
    let condition = HexHash(Sha256::digest(&preimage).into());
    let mut h = HoldRequest::new(id("h1"), pts(100), time(now_ms() + 600_000));
    h.condition = Some(condition);
    h.payee = Some("brand-b".parse().unwrap());
    // A hold for a partner needs the member's spend authorisation, used once.
    let err = c.hold(&alice, &h).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("authorisation_required"),
        "{err:?}"
    );
    c.authorise(
        &alice,
        &AuthoriseRequest {
            id: id("auth1"),
            payee: "brand-b".parse().unwrap(),
            max_points: pts(100),
            expires_at: time(now_ms() + 600_000),
        },
    )
    .await
    .unwrap();
    h.authorisation = Some(id("auth1"));
    c.hold(&alice, &h).await.unwrap();
    let mut again = h.clone();
    again.id = id("h1-again");
    let err = c.hold(&alice, &again).await.unwrap_err();
    assert!(format!("{err:?}").contains("authorisation_used"), "{err:?}");
    // FX rates are policy entries.
    c.set_fx_rate(&SetFxRateRequest {
        id: id("fx1"),
        from: "EUR".parse().unwrap(),
        to: "USD".parse().unwrap(),
        rate: "1.08".parse().unwrap(),
        valid_from: time(now_ms() + 60_000),
    })
    .await
    .unwrap();
    let m = c.member(&alice).await.unwrap();
    assert_eq!(m.pending, 100);
    let mut p = PostRequest::new(id("p1"));
    p.preimage = Some(HexBytes(preimage));
    c.post_hold(&id("h1"), &p).await.unwrap();
    c.hold(
        &alice,
        &HoldRequest::new(id("h2"), pts(10), time(now_ms() + 600_000)),
    )
    .await
    .unwrap();
    c.void_hold(&id("h2"), &VoidRequest { id: id("v1") })
        .await
        .unwrap();
    let hs = c.hold_status(&id("h1")).await.unwrap();
    assert_eq!(hs.points, 100);
    let hs2 = c.hold_status(&id("h2")).await.unwrap();
    assert_eq!(format!("{:?}", hs2.status).to_lowercase(), "voided");

    // Adjust (admin).
    c.adjust(
        &alice,
        &AdjustRequest {
            id: id("a1"),
            points: pts(5),
            direction: Direction::Credit,
            reason: "goodwill".into(),
        },
    )
    .await
    .unwrap();

    let m = c.member(&alice).await.unwrap();
    assert_eq!(
        m.balance,
        1200 + 5 - 200 + 50 - 100 + 5,
        "e1, e1b (batch), r1, refund, h1, a1"
    );
    assert_eq!(m.pending, 0);
    assert_eq!(m.available, m.balance);
    assert!(!m.lots.is_empty());

    // History, paginated.
    let all = c.history_all(&alice).await.unwrap();
    let types: Vec<&str> = all.iter().map(|h| h.entry.kind.type_name()).collect();
    for t in [
        "earn",
        "tier_change",
        "redeem",
        "refund",
        "hold",
        "post",
        "void",
        "adjust",
    ] {
        assert!(types.contains(&t), "history lacks {t}: {types:?}");
    }
    let page = c.history(&alice, None, Some(2)).await.unwrap();
    assert_eq!(page.entries.len(), 2);
    let next = c
        .history(&alice, page.next_cursor.as_deref(), Some(2))
        .await
        .unwrap();
    assert!(next.entries[0].index > page.entries[1].index);

    // API keys: create, use, list, revoke.
    let k = c
        .create_key(&CreateKeyRequest {
            name: "pos".into(),
            scopes: vec![Scope::Earn, Scope::Read],
        })
        .await
        .unwrap();
    let pos = node.client_with_key(&k.key);
    pos.earn(&member("bob"), &EarnRequest::new(id("e-bob"), pts(7)))
        .await
        .unwrap();
    let keys = c.list_keys().await.unwrap();
    assert!(keys.iter().any(|x| x.key_id == k.key_id && !x.revoked));
    c.revoke_key(&k.key_id).await.unwrap();
    let e = pos
        .earn(&member("bob"), &EarnRequest::new(id("e-bob2"), pts(7)))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::Unauthenticated));

    // The public log.
    let key = c.log_key().await.unwrap();
    assert_eq!(key.verifier_key, node.verifier_key);
    let (cp, note) = c.verified_checkpoint().await.unwrap();
    assert_eq!(note, c.checkpoint_note().await.unwrap());
    let entries = c.log_entries(0, cp.size).await.unwrap();
    assert_eq!(entries.len() as u64, cp.size);
    let r = c.entry_receipt(w.index).await.unwrap();
    r.verify(&node.verifier_key.parse().unwrap()).unwrap();
    let inc = c.inclusion_proof(0, cp.size).await.unwrap();
    assert_eq!(inc.size, cp.size);
    let con = c.consistency_proof(1, cp.size).await.unwrap();
    assert_eq!(con.new, cp.size);
    let cps = c.checkpoints(None, Some(1000)).await.unwrap();
    assert!(cps.checkpoints.iter().any(|x| x.size == cp.size));
    // Tiles: a partial level-0 tile holds one hash per entry; the entry bundle the entries.
    let width = (cp.size % 256) as u8;
    let tile = c.tile(0, 0, Some(width)).await.unwrap();
    assert_eq!(tile.len(), 32 * width as usize);
    let bundle = c.entry_bundle(0, Some(width)).await.unwrap();
    let first_len = u16::from_be_bytes([bundle[0], bundle[1]]) as usize;
    assert_eq!(&bundle[2..2 + first_len], entries[0].entry.as_bytes());

    // Operations.
    c.healthz().await.unwrap();
    assert!(c.readyz().await.unwrap());
    let metrics = c.metrics().await.unwrap();
    assert_store_metrics(&metrics);
    assert!(metrics.contains("loyalty_http_requests_total"));
    assert!(metrics.contains("loyalty_batch_writes"));
    let openapi = c.openapi().await.unwrap();
    assert!(openapi["paths"]["/v1/members/{member}/earn"].is_object());

    // The whole log verifies and replays.
    let summary = sdk::verify_log(
        &c,
        &node.verifier_key.parse().unwrap(),
        VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.entries, cp.size.max(summary.entries));

    // And with the replay's state in a RocksDB store of the auditor's (`loyalty verify
    // --disk`): the same result, the records written there, and a member as the node has it.
    let dir = tempfile::tempdir().unwrap();
    let store = ledger_store::store::Store::open(dir.path()).unwrap();
    let state = ledger::state::State::open(Arc::new(store.clone())).unwrap();
    let flushes = Arc::new(Mutex::new(0u32));
    let (s2, f2) = (store.clone(), flushes.clone());
    let on_disk = sdk::verify_log(
        &c,
        &node.verifier_key.parse().unwrap(),
        VerifyOptions {
            replay_store: Some(sdk::ReplayStore {
                state,
                flush: Box::new(move |changes, _point| {
                    *f2.lock().unwrap() += 1;
                    s2.state_write(&changes).map_err(|e| e.to_string())
                }),
                flush_every: 3,
                resume: None,
                close: None,
            }),
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(on_disk.entries, summary.entries);
    assert_eq!(on_disk.members, summary.members);
    assert_eq!(on_disk.system_balances, summary.system_balances);
    assert!(
        *flushes.lock().unwrap() >= 2,
        "the replay flushed as it went"
    );
    let replayed = ledger::state::State::open(Arc::new(store)).unwrap();
    assert_eq!(replayed.size(), summary.entries);
    let bob = replayed.member(&"bob".parse().unwrap()).unwrap().unwrap();
    assert_eq!(bob.balance, c.member(&member("bob")).await.unwrap().balance);
}

/// One bad request: what is sent and what must come back.
struct Bad {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    key: Option<String>,
    content_type: Option<&'static str>,
    status: u16,
    code: &'static str,
}

/// A node whose clock is ahead of the client's: a rate card valid from the client's clock plus
/// a second is in the node's past and refused; one valid from the node's log time (`GET
/// /v1/log/time`, `Client::log_time`) plus a second is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_time_is_readable_and_a_rate_card_chosen_from_it_is_accepted() {
    let node = Node::start_new("brand-a", &[("LOYALTY_CLOCK_SKEW_MS", "5000")]);
    let c = node.client();
    let empty = c.log_time().await.unwrap();
    assert_eq!((empty.size, empty.last_entry_time), (0, None));
    assert!(empty.now >= now_ms() + 4000, "{empty:?}");

    let rate = |rid: &str, valid_from: u64| SetRateCardRequest {
        id: id(rid),
        currency: "EUR".parse().unwrap(),
        point_value: "0.01".parse().unwrap(),
        valid_from: time(valid_from),
    };
    let e = c
        .set_rate_card(&rate("rc-client", now_ms() + 1000))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::RateCardInPast), "{e:?}");
    let t = c.log_time().await.unwrap();
    c.set_rate_card(&rate("rc-node", t.now + 1000))
        .await
        .unwrap();

    // After an entry, `now` is past its time and the latest entry is named.
    let after = c.log_time().await.unwrap();
    assert_eq!(after.size, 1);
    let last = after.last_entry_time.expect("an entry");
    assert!(after.now > last && last >= t.now, "{after:?} after {t:?}");
}

fn bad(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: Value,
    status: u16,
    code: &'static str,
) -> Bad {
    Bad {
        name,
        method,
        path: path.into(),
        body: Some(body.to_string()),
        key: None,
        content_type: Some("application/json"),
        status,
        code,
    }
}

fn raw(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: &str,
    status: u16,
    code: &'static str,
) -> Bad {
    Bad {
        body: Some(body.into()),
        ..bad(name, method, path, Value::Null, status, code)
    }
}

fn with_key(mut b: Bad, key: &str) -> Bad {
    b.key = Some(key.into());
    b
}

async fn log_size(http: &reqwest::Client, url: &str) -> u64 {
    let note = http
        .get(format!("{url}/checkpoint"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_typed_errors_and_change_nothing() {
    let node = Node::start_new("brand-a", &[]);
    let c = node.client();
    let alice = member("alice");
    c.earn(&alice, &EarnRequest::new(id("e1"), pts(100)))
        .await
        .unwrap();
    c.redeem(&alice, &RedeemRequest::new(id("r1"), pts(10)))
        .await
        .unwrap();
    let far = now_ms() + 600_000;
    c.hold(&alice, &HoldRequest::new(id("h-void"), pts(5), time(far)))
        .await
        .unwrap();
    c.void_hold(&id("h-void"), &VoidRequest { id: id("v1") })
        .await
        .unwrap();
    let mut cond = HoldRequest::new(id("h-cond"), pts(5), time(far));
    cond.condition = Some(HexHash(Sha256::digest(b"secret").into()));
    c.hold(&alice, &cond).await.unwrap();
    c.hold(&alice, &HoldRequest::new(id("h-plain"), pts(5), time(far)))
        .await
        .unwrap();
    let read = c
        .create_key(&CreateKeyRequest {
            name: "reader".into(),
            scopes: vec![Scope::Read],
        })
        .await
        .unwrap()
        .key;
    let earner = c
        .create_key(&CreateKeyRequest {
            name: "earner".into(),
            scopes: vec![Scope::Earn],
        })
        .await
        .unwrap()
        .key;
    let revoked = c
        .create_key(&CreateKeyRequest {
            name: "gone".into(),
            scopes: vec![Scope::Admin],
        })
        .await
        .unwrap();
    c.revoke_key(&revoked.key_id).await.unwrap();

    let earn = "/v1/members/alice/earn";
    let big = "x".repeat(70 * 1024);
    let catalog: Vec<Bad> = vec![
        raw(
            "malformed json",
            "POST",
            earn,
            "{\"id\":",
            400,
            "invalid_body",
        ),
        raw(
            "json array body",
            "POST",
            earn,
            "[1,2]",
            400,
            "invalid_body",
        ),
        raw("json null body", "POST", earn, "null", 400, "invalid_body"),
        bad(
            "unknown field",
            "POST",
            earn,
            json!({"id":"x1","points":1,"bonus":true}),
            400,
            "invalid_body",
        ),
        bad(
            "missing points",
            "POST",
            earn,
            json!({"id":"x2"}),
            400,
            "invalid_body",
        ),
        bad(
            "missing id",
            "POST",
            earn,
            json!({"points":1}),
            400,
            "invalid_body",
        ),
        bad(
            "zero points",
            "POST",
            earn,
            json!({"id":"x3","points":0}),
            400,
            "invalid_body",
        ),
        bad(
            "negative points",
            "POST",
            earn,
            json!({"id":"x4","points":-5}),
            400,
            "invalid_body",
        ),
        bad(
            "points above 2^53-1",
            "POST",
            earn,
            json!({"id":"x5","points":9007199254740992u64}),
            400,
            "invalid_body",
        ),
        raw(
            "float points",
            "POST",
            earn,
            "{\"id\":\"x6\",\"points\":1.5}",
            400,
            "invalid_body",
        ),
        bad(
            "points as string",
            "POST",
            earn,
            json!({"id":"x7","points":"10"}),
            400,
            "invalid_body",
        ),
        bad(
            "empty id",
            "POST",
            earn,
            json!({"id":"","points":1}),
            400,
            "invalid_body",
        ),
        bad(
            "id too long",
            "POST",
            earn,
            json!({"id":"i".repeat(129),"points":1}),
            400,
            "invalid_body",
        ),
        bad(
            "id with space",
            "POST",
            earn,
            json!({"id":"a b","points":1}),
            400,
            "invalid_body",
        ),
        bad(
            "reserved id",
            "POST",
            earn,
            json!({"id":"sys.tier.1","points":1}),
            422,
            "reserved_id",
        ),
        bad(
            "no earns",
            "POST",
            "/v1/earns",
            json!({"earns": []}),
            422,
            "too_many_items",
        ),
        bad(
            "501 earns",
            "POST",
            "/v1/earns",
            json!({"earns": (0..501).map(|k| json!({"member": "bob", "id": format!("m{k}"), "points": 1})).collect::<Vec<_>>()}),
            422,
            "too_many_items",
        ),
        bad(
            "an id twice in one batch",
            "POST",
            "/v1/earns",
            json!({"earns": [{"member":"bob","id":"d1","points":1},{"member":"carol","id":"d1","points":1}]}),
            422,
            "duplicate_id",
        ),
        bad(
            "a reserved id in a batch",
            "POST",
            "/v1/earns",
            json!({"earns": [{"member":"bob","id":"ok1","points":1},{"member":"bob","id":"sys.x","points":1}]}),
            422,
            "reserved_id",
        ),
        bad(
            "zero points in a batch",
            "POST",
            "/v1/earns",
            json!({"earns": [{"member":"bob","id":"ok2","points":1},{"member":"bob","id":"z1","points":0}]}),
            400,
            "invalid_body",
        ),
        bad(
            "unknown field in a batch item",
            "POST",
            "/v1/earns",
            json!({"earns": [{"member":"bob","id":"ok3","points":1,"bonus":true}]}),
            400,
            "invalid_body",
        ),
        with_key(
            bad(
                "batch with a read key",
                "POST",
                "/v1/earns",
                json!({"earns": [{"member":"bob","id":"ok4","points":1}]}),
                403,
                "forbidden",
            ),
            &read,
        ),
        bad(
            "member with @",
            "POST",
            "/v1/members/a@b.com/earn",
            json!({"id":"x8","points":1}),
            400,
            "invalid_parameter",
        ),
        bad(
            "member too long",
            "POST",
            &format!("/v1/members/{}/earn", "m".repeat(129)),
            json!({"id":"x9","points":1}),
            400,
            "invalid_parameter",
        ),
        Bad {
            content_type: None,
            ..bad(
                "no content type",
                "POST",
                earn,
                json!({"id":"x10","points":1}),
                415,
                "unsupported_media_type",
            )
        },
        raw(
            "oversize body",
            "POST",
            earn,
            &format!("{{\"id\":\"x11\",\"points\":1,\"pad\":\"{big}\"}}"),
            413,
            "body_too_large",
        ),
        Bad {
            key: Some(String::new()),
            ..bad(
                "no api key",
                "POST",
                earn,
                json!({"id":"x12","points":1}),
                401,
                "unauthenticated",
            )
        },
        with_key(
            bad(
                "unknown api key",
                "POST",
                earn,
                json!({"id":"x13","points":1}),
                401,
                "unauthenticated",
            ),
            "lk_0000000000000000_00",
        ),
        with_key(
            bad(
                "read key cannot earn",
                "POST",
                earn,
                json!({"id":"x14","points":1}),
                403,
                "forbidden",
            ),
            &read,
        ),
        with_key(
            bad(
                "revoked key",
                "POST",
                earn,
                json!({"id":"x15","points":1}),
                401,
                "unauthenticated",
            ),
            &revoked.key,
        ),
        with_key(
            bad(
                "earn key cannot redeem",
                "POST",
                "/v1/members/alice/redeem",
                json!({"id":"x16","points":1}),
                403,
                "forbidden",
            ),
            &earner,
        ),
        bad(
            "redeem more than available",
            "POST",
            "/v1/members/alice/redeem",
            json!({"id":"x17","points":1000}),
            422,
            "insufficient_points",
        ),
        bad(
            "redeem for unknown member",
            "POST",
            "/v1/members/nobody/redeem",
            json!({"id":"x18","points":1}),
            404,
            "unknown_member",
        ),
        bad(
            "reused id with another body",
            "POST",
            earn,
            json!({"id":"e1","points":101}),
            409,
            "id_conflict",
        ),
        bad(
            "hold expiring in the past",
            "POST",
            "/v1/members/alice/holds",
            json!({"id":"x19","points":1,"expires_at":1000}),
            422,
            "hold_expiry_not_in_future",
        ),
        bad(
            "hold with bad condition hex",
            "POST",
            "/v1/members/alice/holds",
            json!({"id":"x20","points":1,"expires_at":far,"condition":"zz"}),
            400,
            "invalid_body",
        ),
        bad(
            "hold with invalid payee",
            "POST",
            "/v1/members/alice/holds",
            json!({"id":"x21","points":1,"expires_at":far,"payee":"Brand!"}),
            400,
            "invalid_body",
        ),
        bad(
            "post an unknown hold",
            "POST",
            "/v1/holds/nope/post",
            json!({"id":"x22"}),
            404,
            "unknown_hold",
        ),
        bad(
            "post a voided hold",
            "POST",
            "/v1/holds/h-void/post",
            json!({"id":"x23"}),
            409,
            "hold_not_open",
        ),
        bad(
            "void a voided hold",
            "POST",
            "/v1/holds/h-void/void",
            json!({"id":"x24"}),
            409,
            "hold_not_open",
        ),
        bad(
            "post without the preimage",
            "POST",
            "/v1/holds/h-cond/post",
            json!({"id":"x25"}),
            422,
            "preimage_required",
        ),
        bad(
            "post with a wrong preimage",
            "POST",
            "/v1/holds/h-cond/post",
            json!({"id":"x26","preimage":"00ff"}),
            422,
            "condition_not_met",
        ),
        bad(
            "post a plain hold with a preimage",
            "POST",
            "/v1/holds/h-plain/post",
            json!({"id":"x27","preimage":"00ff"}),
            422,
            "unexpected_preimage",
        ),
        bad(
            "refund an unknown redemption",
            "POST",
            "/v1/redemptions/nope/refund",
            json!({"id":"x28","points":1}),
            404,
            "unknown_redemption",
        ),
        bad(
            "refund more than redeemed",
            "POST",
            "/v1/redemptions/r1/refund",
            json!({"id":"x29","points":11}),
            422,
            "refund_exceeds_redemption",
        ),
        with_key(
            bad(
                "earn key cannot adjust",
                "POST",
                "/v1/members/alice/adjust",
                json!({"id":"x30","points":1,"direction":"credit","reason":"r"}),
                403,
                "forbidden",
            ),
            &earner,
        ),
        bad(
            "adjust debit beyond balance",
            "POST",
            "/v1/members/alice/adjust",
            json!({"id":"x31","points":1000,"direction":"debit","reason":"r"}),
            422,
            "insufficient_points",
        ),
        bad(
            "adjust with empty reason",
            "POST",
            "/v1/members/alice/adjust",
            json!({"id":"x32","points":1,"direction":"credit","reason":""}),
            400,
            "invalid_body",
        ),
        bad(
            "adjust with unknown direction",
            "POST",
            "/v1/members/alice/adjust",
            json!({"id":"x33","points":1,"direction":"up","reason":"r"}),
            400,
            "invalid_body",
        ),
        bad(
            "tier policy without base tier",
            "PUT",
            "/v1/policy/tiers",
            json!({"id":"x34","tiers":[{"name":"gold","threshold":5}],"window_ms":1000,"grace_ms":0}),
            400,
            "invalid_body",
        ),
        with_key(
            bad(
                "read key cannot set policy",
                "PUT",
                "/v1/policy/tiers",
                json!({"id":"x35","tiers":[{"name":"blue","threshold":0}],"window_ms":1000,"grace_ms":0}),
                403,
                "forbidden",
            ),
            &read,
        ),
        bad(
            "rate card in the past",
            "PUT",
            "/v1/policy/rate-card",
            json!({"id":"x36","currency":"EUR","point_value":"0.01","valid_from":1000}),
            422,
            "rate_card_in_past",
        ),
        bad(
            "rate card in a currency without minor unit",
            "PUT",
            "/v1/policy/rate-card",
            json!({"id":"x37","currency":"XAU","point_value":"0.01","valid_from":far}),
            400,
            "invalid_body",
        ),
        bad(
            "rate card with non-canonical decimal",
            "PUT",
            "/v1/policy/rate-card",
            json!({"id":"x38","currency":"EUR","point_value":"1.50","valid_from":far}),
            400,
            "invalid_body",
        ),
        bad(
            "expiry policy of zero",
            "PUT",
            "/v1/policy/expiry",
            json!({"id":"x39","lot_lifetime_ms":0}),
            400,
            "invalid_body",
        ),
        bad(
            "key with unknown scope",
            "POST",
            "/v1/admin/keys",
            json!({"name":"k","scopes":["root"]}),
            400,
            "invalid_body",
        ),
        bad(
            "key with no scope",
            "POST",
            "/v1/admin/keys",
            json!({"name":"k","scopes":[]}),
            400,
            "invalid_body",
        ),
        Bad {
            body: None,
            ..bad(
                "unknown member read",
                "GET",
                "/v1/members/nobody",
                Value::Null,
                404,
                "unknown_member",
            )
        },
        Bad {
            body: None,
            ..bad(
                "history with a bad cursor",
                "GET",
                "/v1/members/alice/history?cursor=abc",
                Value::Null,
                400,
                "invalid_parameter",
            )
        },
        Bad {
            body: None,
            ..bad(
                "history with limit 0",
                "GET",
                "/v1/members/alice/history?limit=0",
                Value::Null,
                400,
                "invalid_parameter",
            )
        },
        Bad {
            body: None,
            ..bad(
                "entries with start after end",
                "GET",
                "/v1/log/entries?start=5&end=1",
                Value::Null,
                400,
                "invalid_parameter",
            )
        },
        Bad {
            body: None,
            ..bad(
                "inclusion proof beyond the log",
                "GET",
                "/v1/log/proof/inclusion?index=0&size=100000",
                Value::Null,
                400,
                "invalid_parameter",
            )
        },
        Bad {
            body: None,
            ..bad(
                "consistency proof old after new",
                "GET",
                "/v1/log/proof/consistency?old=5&new=2",
                Value::Null,
                400,
                "invalid_parameter",
            )
        },
        Bad {
            body: None,
            ..bad(
                "malformed tile path",
                "GET",
                "/tile/0/5",
                Value::Null,
                404,
                "not_found",
            )
        },
        Bad {
            body: None,
            ..bad(
                "unknown route",
                "GET",
                "/v1/nope",
                Value::Null,
                404,
                "not_found",
            )
        },
    ];
    assert!(
        catalog.len() >= 40,
        "the catalog has {} cases",
        catalog.len()
    );

    let http = reqwest::Client::new();
    let size_before = log_size(&http, &node.url).await;
    let entries_before = c.log_entries(0, size_before).await.unwrap();
    for b in &catalog {
        let mut req = http.request(b.method.parse().unwrap(), format!("{}{}", node.url, b.path));
        match &b.key {
            Some(k) if k.is_empty() => {}
            Some(k) => req = req.bearer_auth(k),
            None => req = req.bearer_auth(&node.admin_key),
        }
        if let Some(ct) = b.content_type {
            if b.body.is_some() {
                req = req.header("content-type", ct);
            }
        }
        if let Some(body) = &b.body {
            req = req.body(body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, b.status, "{}: status (body {body})", b.name);
        assert_eq!(body["code"], b.code, "{}: code (body {body})", b.name);
        assert_eq!(
            ctype, "application/problem+json",
            "{}: content type",
            b.name
        );
        assert_eq!(body["status"], b.status, "{}: problem status", b.name);
    }
    // Nothing of it reached the log.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let size_after = log_size(&http, &node.url).await;
    assert_eq!(size_after, size_before, "a refused request changed the log");
    assert_eq!(c.log_entries(0, size_after).await.unwrap(), entries_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let mut node = Node::start_new("brand-a", &[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let client = sdk::Client::builder(&node.url)
            .api_key(node.admin_key.clone())
            .retry(RetryPolicy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let eid = format!("w{w}-{n}");
                let m = member(&format!("m{}", n % 50));
                match client
                    .earn(&m, &EarnRequest::new(id(&eid), pts(1 + n % 9)))
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push(eid),
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    node.kill9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too few writes acknowledged: {}",
        acked.len()
    );

    node.start();
    let c = node.client();
    let (cp, _) = c.verified_checkpoint().await.unwrap();
    let mut logged = BTreeSet::new();
    let mut start = 0;
    while start < cp.size {
        let page = c
            .log_entries(start, (start + 1000).min(cp.size))
            .await
            .unwrap();
        for e in &page {
            let entry = sdk::Entry::from_bytes(e.entry.as_bytes()).unwrap();
            if matches!(entry.kind, EntryKind::Earn(_)) {
                logged.insert(entry.id.to_string());
            }
        }
        start += page.len() as u64;
    }
    for a in &acked {
        assert!(
            logged.contains(a),
            "acknowledged write {a} is missing after kill -9"
        );
    }
    let summary = sdk::verify_log(
        &c,
        &node.verifier_key.parse().unwrap(),
        VerifyOptions::default(),
    )
    .await
    .expect("the log verifies after kill -9 and restart");
    assert_eq!(summary.entries, cp.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_node_serves_the_same_log() {
    let mut node = Node::start_new("brand-a", &[]);
    let c = node.client();
    for i in 0..20 {
        c.earn(
            &member("alice"),
            &EarnRequest::new(id(&format!("e{i}")), pts(10)),
        )
        .await
        .unwrap();
    }
    let note = c.checkpoint_note().await.unwrap();
    let backup = node.data.parent().unwrap().join("backup");
    let out = std::process::Command::new(harness::bin())
        .args(["backup", "--data"])
        .arg(&node.data)
        .arg("--to")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Writes after the backup are not in it.
    c.earn(&member("alice"), &EarnRequest::new(id("after"), pts(10)))
        .await
        .unwrap();
    node.stop();

    let restored = Node::start_existing(&backup, &node.verifier_key, &node.admin_key);
    let rc = restored.client();
    assert_eq!(rc.checkpoint_note().await.unwrap(), note);
    assert_eq!(rc.member(&member("alice")).await.unwrap().balance, 200);
    sdk::verify_log(
        &rc,
        &node.verifier_key.parse().unwrap(),
        VerifyOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after() {
    let node = Node::start_new(
        "brand-a",
        &[
            ("LOYALTY_QUEUE_DEPTH_MAX", "1"),
            ("LOYALTY_BATCH_WRITES_MAX", "1"),
        ],
    );
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url, key) = (http.clone(), node.url.clone(), node.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/v1/members/m/earn"))
                .bearer_auth(key)
                .json(&json!({"id": format!("q{i}"), "points": 1}))
                .send()
                .await
                .unwrap();
            let retry_after = r.headers().get("retry-after").is_some();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (
                status,
                retry_after,
                body["code"].as_str().unwrap_or("").to_owned(),
            )
        }));
    }
    let mut overloaded = 0;
    for t in tasks {
        let (status, retry_after, code) = t.await.unwrap();
        match status {
            200 => {}
            503 => {
                assert_eq!(code, "overloaded");
                assert!(retry_after);
                overloaded += 1;
            }
            s => panic!("unexpected status {s} ({code})"),
        }
    }
    assert!(
        overloaded > 0,
        "200 concurrent writes never filled a queue of 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_the_node_restarts_with_the_same_log() {
    let mut node = Node::start_new("brand-a", &[]);
    let c = node.client();
    c.earn(&member("alice"), &EarnRequest::new(id("e1"), pts(10)))
        .await
        .unwrap();
    let note = c.checkpoint_note().await.unwrap();
    let status = node.stop();
    assert!(status.success(), "node exited with {status}");
    node.start();
    assert_eq!(node.client().checkpoint_note().await.unwrap(), note);
}

/// A member's read shows the first 50 lots and a cursor; `GET /v1/members/{m}/lots` pages on,
/// soonest-expiring first, and refuses a bad cursor or limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_lots_are_paged_with_a_cursor() {
    let node = Node::start_new("brand-a", &[]);
    let c = node.client();
    c.set_expiry(&SetExpiryRequest {
        id: id("expiry-1"),
        lot_lifetime_ms: Some(sdk::DurationMs::new(86_400_000).unwrap()),
    })
    .await
    .unwrap();
    let items: Vec<EarnItem> = (0..60)
        .map(|i| EarnItem::new(member("many"), id(&format!("lot-{i}")), pts(1 + i)))
        .collect();
    c.earn_many(&items).await.unwrap();
    let m = c.member(&member("many")).await.unwrap();
    assert_eq!((m.lots.len(), m.lots_total), (50, 60));
    let cursor = m
        .lots_next_cursor
        .clone()
        .expect("a cursor past the first 50");
    let rest = c
        .member_lots(&member("many"), Some(&cursor), None)
        .await
        .unwrap();
    assert_eq!(rest.lots.len(), 10);
    assert_eq!(rest.next_cursor, None);
    let all: Vec<_> = m.lots.iter().chain(&rest.lots).collect();
    assert!(all
        .windows(2)
        .all(|w| (w[0].expires_at, w[0].lot) < (w[1].expires_at, w[1].lot)));
    assert_eq!(
        all.iter().map(|l| l.remaining).sum::<u64>(),
        m.balance,
        "the pages hold every point"
    );
    let small = c.member_lots(&member("many"), None, Some(7)).await.unwrap();
    assert_eq!(small.lots.len(), 7);
    assert!(small.next_cursor.is_some());
    let e = c
        .member_lots(&member("many"), Some("not-a-cursor"), None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(ErrorCode::InvalidParameter));
    assert!(c
        .member_lots(&member("many"), None, Some(51))
        .await
        .is_err());
}
