//! Signed peer requests (node/src/federation/peer.rs, spec/federation.md §2): header parsing
//! (`parse_headers`) and the signature check against a pinned key (`check_signed`), the two
//! pure steps of `peer::verify` before its clock, nonce and partner checks.
//!
//! Two kinds of input, by the first byte (fuzz/seeds.py writes both):
//! - even, raw: arbitrary header values, method, path and body;
//! - odd, signed: a request correctly signed by the pinned key over fuzzer-chosen parts, then
//!   possibly one part changed by the fuzzer.
//!
//! Invariants checked: nothing panics; parsed headers are well-formed (the nonce is the hex of
//! its bytes, the time has at most 16 digits); a correctly signed request checks, and a request
//! with any signed part changed does not.
#![no_main]

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, Method};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use node::federation::peer::{
    check_signed, message, parse_headers, PeerRequestError, H_NONCE, H_PEER, H_SIGNATURE, H_TIME,
};
use sha2::{Digest, Sha256};

const SENDER: &str = "brand-a";
const RECEIVER: &str = "brand-b";

/// What the `Signed` mode changes after signing.
#[derive(Debug)]
enum Change {
    None,
    Sender(String),
    Receiver(String),
    Method(String),
    Path(String),
    Body(Vec<u8>),
    Time(u64),
    Nonce([u8; 16]),
    SignatureBit(u16),
    Key([u8; 32]),
}

impl Change {
    fn new(kind: u8, data: &[u8]) -> Change {
        let text = || String::from_utf8_lossy(data).into_owned();
        match kind % 10 {
            0 => Change::None,
            1 => Change::Sender(text()),
            2 => Change::Receiver(text()),
            3 => Change::Method(text()),
            4 => Change::Path(text()),
            5 => Change::Body(data.to_vec()),
            6 => Change::Time(text().parse().unwrap_or(0)),
            7 => Change::Nonce(nonce_of(data)),
            8 => Change::SignatureBit(u16::from_be_bytes([
                data.first().copied().unwrap_or(0),
                data.get(1).copied().unwrap_or(0),
            ])),
            _ => Change::Key(Sha256::digest(data).into()),
        }
    }
}

/// 32 hex digits as their 16 bytes; anything else hashed to 16 bytes.
fn nonce_of(data: &[u8]) -> [u8; 16] {
    hex::decode(data)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| Sha256::digest(data)[..16].try_into().unwrap())
}

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_bytes(&[0x42; 32]))
}

const NAMES: [&str; 4] = [H_PEER, H_TIME, H_NONCE, H_SIGNATURE];

/// A method and path as axum hands them to `verify`: an HTTP token and a URI path-and-query.
fn request_line(method: &str, path: &str) -> Option<(Method, String)> {
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: axum::http::Uri = path.parse().ok()?;
    let pq = uri.path_and_query()?.as_str().to_owned();
    Some((method, pq))
}

fn raw(headers: &[&[u8]], method: &str, path: &str, body: &[u8]) {
    let mut map = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(headers) {
        if value.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.append(*name, v);
        }
    }
    let Ok(h) = parse_headers(&map) else {
        return;
    };
    assert_eq!(hex::encode(h.nonce), h.nonce_hex);
    assert!(h.time_ms < 10_000_000_000_000_000);
    assert_eq!(
        h.sender.as_str(),
        map.get(H_PEER).unwrap().to_str().unwrap()
    );
    let vk = key().verifying_key();
    let _ = check_signed(&vk, RECEIVER, method, path, body, &h);
}

#[allow(clippy::too_many_arguments)]
fn signed(method: &str, path: &str, body: &[u8], time_ms: u64, nonce: [u8; 16], change: Change) {
    let Some((method, path)) = request_line(method, path) else {
        return;
    };
    let time_ms = time_ms % 10_000_000_000_000_000;
    let nonce_hex = hex::encode(nonce);
    let msg = message(
        SENDER,
        RECEIVER,
        method.as_str(),
        &path,
        body,
        time_ms,
        &nonce_hex,
    );
    let mut sig = key().sign(msg.as_bytes()).to_bytes();
    let (mut sender, mut receiver) = (SENDER.to_string(), RECEIVER.to_string());
    let (mut method_s, mut path_s, mut body_v) =
        (method.as_str().to_string(), path.clone(), body.to_vec());
    let (mut time, mut nonce_v) = (time_ms, nonce);
    let mut vk: VerifyingKey = key().verifying_key();
    let changed = match change {
        Change::None => false,
        Change::Sender(s) => {
            let c = s != sender;
            sender = s;
            c
        }
        Change::Receiver(s) => {
            let c = s != receiver;
            receiver = s;
            c
        }
        Change::Method(m) => match request_line(&m, "/") {
            Some((m, _)) => {
                let c = m.as_str() != method_s;
                method_s = m.as_str().to_string();
                c
            }
            None => return,
        },
        Change::Path(p) => match request_line("POST", &p) {
            Some((_, p)) => {
                let c = p != path_s;
                path_s = p;
                c
            }
            None => return,
        },
        Change::Body(b) => {
            let c = b != body_v;
            body_v = b;
            c
        }
        Change::Time(t) => {
            let t = t % 10_000_000_000_000_000;
            let c = t != time;
            time = t;
            c
        }
        Change::Nonce(n) => {
            let c = n != nonce_v;
            nonce_v = n;
            c
        }
        Change::SignatureBit(bit) => {
            sig[usize::from(bit / 8) % 64] ^= 1 << (bit % 8);
            true
        }
        Change::Key(seed) => {
            vk = SigningKey::from_bytes(&seed).verifying_key();
            vk != key().verifying_key()
        }
    };
    let mut map = HeaderMap::new();
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    for (name, value) in [
        (H_PEER, sender.clone()),
        (H_TIME, time.to_string()),
        (H_NONCE, hex::encode(nonce_v)),
        (H_SIGNATURE, sig_b64),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                map.insert(name, v);
            }
            Err(_) => return,
        }
    }
    let parsed = match parse_headers(&map) {
        Ok(h) => h,
        Err(e) => {
            // Only a changed sender can make the headers of a signed request malformed.
            assert!(
                matches!(
                    e,
                    PeerRequestError::Unsigned(_) | PeerRequestError::Malformed(_)
                ),
                "{e}"
            );
            assert_ne!(sender, SENDER, "the headers of a signed request parse");
            return;
        }
    };
    let result = check_signed(&vk, &receiver, &method_s, &path_s, &body_v, &parsed);
    if changed {
        assert!(result.is_err(), "a changed request still verifies: {map:?}");
    } else {
        result.expect("a correctly signed request verifies");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // peer, time, nonce, signature, method, path, body: 0-separated; an empty header is
        // absent.
        let parts: Vec<&[u8]> = rest.splitn(7, |&b| b == 0).collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or(&[]);
        let method = String::from_utf8_lossy(part(4));
        let path = String::from_utf8_lossy(part(5));
        raw(&parts[..parts.len().min(4)], &method, &path, part(6));
    } else {
        // change kind, then method, path, time, nonce, change data, body: 0-separated.
        let Some((&kind, rest)) = rest.split_first() else {
            return;
        };
        let parts: Vec<&[u8]> = rest.splitn(6, |&b| b == 0).collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or(&[]);
        let text = |i: usize| String::from_utf8_lossy(part(i)).into_owned();
        let time_ms = text(2).parse().unwrap_or(0);
        signed(
            &text(0),
            &text(1),
            part(5),
            time_ms,
            nonce_of(part(3)),
            Change::new(kind, part(4)),
        );
    }
});
