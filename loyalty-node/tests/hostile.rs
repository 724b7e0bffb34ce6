//! Hostile traffic against one real `loyalty-node` (issue 13): what an attacker on the network
//! can send a node before it knows any key. Each test reproduces an attack that worked before
//! the fix and checks that the node now holds, by what it answers, what it exports and what it
//! keeps serving.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::Node;

/// Sends raw bytes on a new connection (left open) and returns it.
fn open_with(url: &str, bytes: &[u8]) -> TcpStream {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Reads until the peer closes (or `limit` passes); `Some(what was read)` if it closed.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
}

/// One request on a new connection (`Connection: close`): status and body.
fn request(url: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let mut s = open_with(
        url,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let got = wait_closed(&mut s, Duration::from_secs(20)).expect("an answer");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn metrics(url: &str) -> String {
    let (status, body) = request(url, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    body
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn earn(node: &Node, id: &str) -> (u16, String) {
    request(
        &node.url,
        "POST",
        "/v1/members/alice/earn",
        Some(&node.admin_key),
        &format!("{{\"id\":\"{id}\",\"points\":10}}"),
    )
}

/// Item 2: every distinct method string used to create a permanent metric series; now the
/// method label is one of a fixed set and `/metrics` stays small.
#[test]
fn odd_http_methods_do_not_grow_the_metrics() {
    let node = Node::start_new("brand-a", &[]);
    for i in 0..200 {
        let method = format!("M{i}{}", "X".repeat(4096));
        let mut s = open_with(
            &node.url,
            format!("{method} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        wait_closed(&mut s, Duration::from_secs(10)).expect("an answer");
    }
    let text = metrics(&node.url);
    assert!(
        !text.contains("XXXX"),
        "a request method became a metric label"
    );
    assert!(
        text.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    assert!(text.contains("method=\"other\""), "{text}");
}

/// Item 3: partial request heads, silent and idle connections used to stay open forever; with
/// 256 file descriptors, 300 half-sent requests stopped all service. Now heads and idleness
/// have deadlines, connections are capped (and counted), and the node serves again while the
/// attacker still holds its sockets.
#[test]
fn half_sent_and_idle_connections_are_closed_and_capped() {
    let env = [
        ("LOYALTY_HEADER_READ_TIMEOUT_MS", "1000"),
        ("LOYALTY_REQUEST_TIMEOUT_MS", "1000"),
        ("LOYALTY_QUEUE_WAIT_MS", "200"),
        ("LOYALTY_BODY_TIMEOUT_MS", "1000"),
        ("LOYALTY_IDLE_TIMEOUT_MS", "2000"),
        ("LOYALTY_CONNECTIONS_MAX", "64"),
    ];
    let node = Node::start_new_with_fd_limit("brand-a", &env, 256);

    // A partial head is closed after the header-read timeout.
    let mut partial = open_with(&node.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    let t0 = Instant::now();
    assert!(
        wait_closed(&mut partial, Duration::from_secs(5)).is_some(),
        "a partial request head stayed open"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );

    // A keep-alive connection that goes silent after an answer is closed too.
    let mut idle = open_with(&node.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let got =
        wait_closed(&mut idle, Duration::from_secs(6)).expect("an idle connection stayed open");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));

    // A connection that sends nothing at all.
    let mut silent = open_with(&node.url, b"");
    assert!(
        wait_closed(&mut silent, Duration::from_secs(6)).is_some(),
        "a silent connection stayed open"
    );

    // 300 half-sent requests, held open by the attacker.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let addr = node.url.strip_prefix("http://").unwrap();
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"POST /v1/members/alice/earn HTTP/1.1\r\nHost: x\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    assert!(
        flood.len() >= 200,
        "the test could not open its connections"
    );
    // Within a few header timeouts the node serves again, sequencer included.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut served = false;
    while Instant::now() < deadline {
        if harness::reqwest::blocking_get_status(&format!("{}/healthz", node.url)).ok() == Some(200)
        {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        served,
        "the node stopped serving under 300 half-sent requests"
    );
    let (status, body) = earn(&node, "after-flood");
    assert_eq!(status, 200, "an earn after the flood: {body}");
    let text = metrics(&node.url);
    assert!(
        metric(&text, "loyalty_http_connections_refused_total").unwrap_or(0.0) > 0.0,
        "no refused connection counted:\n{text}"
    );
    assert!(metric(&text, "loyalty_http_connections").is_some_and(|v| v <= 64.0));
    drop(flood);
}

/// The node refuses to start when its open-file limit cannot hold `limits.connections_max`
/// plus its reserve, naming the key.
#[test]
fn a_connection_cap_beyond_the_open_file_limit_is_refused() {
    let mut node = Node::init("brand-a", &[("LOYALTY_CONNECTIONS_MAX", "1000")]);
    node.fd_limit = Some(256);
    let (status, err) = node.run_expecting_refusal();
    assert!(!status.success());
    assert!(err.contains("limits.connections_max"), "{err}");
}

/// Item 4: one concurrency limit for every route, a bounded wait for a slot, the key checked
/// before the body is read, and a body deadline. Unauthenticated slow bodies used to hold the
/// earn route's slots (per route) for the whole request timeout.
#[test]
fn slow_bodies_and_busy_slots_do_not_delay_earns() {
    let env = [
        ("LOYALTY_CONCURRENCY_MAX", "4"),
        ("LOYALTY_QUEUE_WAIT_MS", "300"),
        ("LOYALTY_BODY_TIMEOUT_MS", "1500"),
    ];
    let node = Node::start_new("brand-a", &env);
    let slow = |key: Option<&str>| {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        open_with(
            &node.url,
            format!(
                "POST /v1/members/alice/earn HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
            )
            .as_bytes(),
        )
    };
    // Without a key: refused from the headers, at once, body unread.
    let mut anonymous: Vec<TcpStream> = (0..50).map(|_| slow(None)).collect();
    let t0 = Instant::now();
    let (status, body) = earn(&node, "e1");
    assert_eq!(status, 200, "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "an earn took {:?} behind slow unauthenticated bodies",
        t0.elapsed()
    );
    for s in anonymous.iter_mut().take(5) {
        let got = wait_closed(s, Duration::from_secs(3)).unwrap_or_default();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(text.contains("unauthenticated"), "{text}");
    }

    // With a key, a body that does not arrive gets 408 body_timeout.
    let mut stalled = slow(Some(&node.admin_key));
    let got = wait_closed(&mut stalled, Duration::from_secs(6)).expect("an answer");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");

    // Every slot taken (over any routes): a request waits at most the queue wait, then 503
    // with Retry-After; the operational routes still answer.
    let _busy: Vec<TcpStream> = (0..4).map(|_| slow(Some(&node.admin_key))).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let mut s = open_with(
        &node.url,
        format!(
            "GET /v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            node.admin_key
        )
        .as_bytes(),
    );
    let got = wait_closed(&mut s, Duration::from_secs(5)).expect("an answer");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("overloaded"), "{text}");
    assert!(text.to_lowercase().contains("retry-after: 1"), "{text}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        t0.elapsed()
    );
    assert_eq!(
        harness::reqwest::blocking_get_status(&format!("{}/healthz", node.url)).unwrap(),
        200
    );
    let text = metrics(&node.url);
    assert!(metric(&text, "loyalty_http_admission_refused_total").unwrap_or(0.0) >= 1.0);
}

/// Item 9: the data directory and the store are private to the node's user, and the node
/// refuses to start with a signing key others can read.
#[cfg(unix)]
#[test]
fn data_files_are_private_and_a_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut node = Node::start_new("brand-a", &[]);
    let (status, body) = earn(&node, "e1");
    assert_eq!(status, 200, "{body}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&node.data), 0o700, "data directory");
    assert_eq!(mode(&node.data.join("node.key")), 0o600, "node.key");
    let mut seen = 0;
    let mut dirs = vec![node.data.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                dirs.push(p.clone());
            }
            if m.file_type().is_symlink() {
                continue;
            }
            assert_eq!(
                m.permissions().mode() & 0o077,
                0,
                "{} is open to group or others",
                p.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 5, "only {seen} files checked");

    node.stop();
    std::fs::set_permissions(
        node.data.join("node.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (status, err) = node.run_expecting_refusal();
    assert!(!status.success());
    assert!(err.contains("chmod 600"), "{err}");
}

/// Item 11: a forward jump of the system clock past `limits.clock_jump_ms_max` stops writes
/// (not ready, 503 `clock_jump`, a metric) until the operator confirms the time.
#[test]
fn a_forward_clock_jump_stops_writes_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let jump = dir.path().join("jump");
    let jump_env = jump.to_str().unwrap().to_owned();
    let node = Node::start_new(
        "brand-a",
        &[
            ("LOYALTY_CLOCK_JUMP_MS_MAX", "5000"),
            ("LOYALTY_FAULT_CLOCK_JUMP_FILE", &jump_env),
        ],
    );
    // Lots that expire 1.5 s after they are earned: one falls due while writes are held.
    let (status, body) = request(
        &node.url,
        "PUT",
        "/v1/policy/expiry",
        Some(&node.admin_key),
        r#"{"id":"expiry-1","lot_lifetime_ms":1500}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(earn(&node, "before").0, 200);
    let size = || {
        let (_, body) = request(&node.url, "GET", "/checkpoint", None, "");
        let text = body.split("\r\n\r\n").nth(1).unwrap_or(&body).to_owned();
        text.lines()
            .nth(1)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let size_before = size();
    std::fs::write(&jump, "3600000").unwrap();
    let ready = || harness::reqwest::blocking_get_status(&format!("{}/readyz", node.url)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready() == 200 {
        assert!(
            Instant::now() < deadline,
            "still ready after a one-hour clock jump"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = earn(&node, "during");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("clock_jump"), "{body}");
    assert_eq!(
        metric(&metrics(&node.url), "loyalty_clock_jump_held"),
        Some(1.0)
    );
    // Reads go on.
    let (status, _) = request(
        &node.url,
        "GET",
        "/v1/members/alice",
        Some(&node.admin_key),
        "",
    );
    assert_eq!(status, 200);
    // Still held a while later: only the operator lifts it. The lot fell due meanwhile, but
    // the housekeeping that would expire it (judged by log time) pauses too.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ready(), 503);
    assert_eq!(
        size(),
        size_before,
        "nothing is logged while the clock is held"
    );

    let out = std::process::Command::new(harness::bin())
        .args(["clock", "confirm", "--data"])
        .arg(&node.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clock confirm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ready(), 200);
    assert_eq!(earn(&node, "after").0, 200);
    assert_eq!(
        metric(&metrics(&node.url), "loyalty_clock_jump_held"),
        Some(0.0)
    );
    // Once confirmed, the housekeeping resumes and expires the lot that fell due.
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() < size_before + 2 {
        assert!(
            Instant::now() < deadline,
            "the due lot was not expired after the confirmation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Item 13: the OpenAPI document is generated once and served as the same bytes.
#[test]
fn openapi_document_is_served_from_memory() {
    let node = Node::start_new("brand-a", &[]);
    let (s1, a) = request(&node.url, "GET", "/v1/openapi.json", None, "");
    let (s2, b) = request(&node.url, "GET", "/v1/openapi.json", None, "");
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert!(v["paths"]["/v1/members/{member}/attestation"]["post"].is_object());
    assert!(v["paths"]["/v1/members/{member}/attestation"]["get"].is_null());
}
