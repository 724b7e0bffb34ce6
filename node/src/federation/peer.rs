//! Signed peer requests (spec/federation.md §2): every node-to-node call carries the sender's
//! brand, its clock, a nonce and an Ed25519 signature over method, path, body digest, time,
//! nonce and both brands. The receiver refuses unsigned, unknown, forged, stale and replayed
//! requests before it acts on them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};

use ledger::types::BrandId;

use loyalty_wire::ErrorCode;

use super::{Federation, Partner};
use crate::problem::ApiError;

pub const H_PEER: &str = "loyalty-peer";
pub const H_TIME: &str = "loyalty-peer-time";
pub const H_NONCE: &str = "loyalty-peer-nonce";
pub const H_SIGNATURE: &str = "loyalty-peer-signature";
/// Most nonces remembered per sender; beyond it that sender's requests are refused until its
/// old ones expire (one partner cannot crowd out the others).
pub const NONCES_PER_PEER_MAX: usize = 200_000;

/// The signed message.
#[allow(clippy::too_many_arguments)]
pub fn message(
    sender: &str,
    receiver: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    time_ms: u64,
    nonce_hex: &str,
) -> String {
    format!(
        "loyalty-peer-request/v1\n{sender}\n{receiver}\n{method}\n{path_and_query}\n{}\n{time_ms}\n{nonce_hex}\n",
        hex::encode(Sha256::digest(body))
    )
}

/// The four headers of a request from `fed` to `receiver`.
pub fn sign(
    fed: &Federation,
    receiver: &BrandId,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let nonce = hex::encode(nonce);
    let time = crate::sequencer::now().get();
    let msg = message(
        fed.brand.as_str(),
        receiver.as_str(),
        method,
        path_and_query,
        body,
        time,
        &nonce,
    );
    let sig = fed.signing_key.sign(msg.as_bytes());
    vec![
        (H_PEER, fed.brand.to_string()),
        (H_TIME, time.to_string()),
        (H_NONCE, nonce),
        (
            H_SIGNATURE,
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        ),
    ]
}

/// Nonces seen recently, per sender, with the time they stop mattering.
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<BrandId, PeerNonces>>,
}

#[derive(Default)]
struct PeerNonces {
    nonces: HashMap<[u8; 16], u64>,
    /// The earliest time a remembered nonce expires: pruning before it finds nothing.
    next_expiry: u64,
}

impl NonceCache {
    /// Records a nonce; `false` when it was seen before (a replay). Forgets expired nonces.
    fn insert(
        &self,
        brand: &BrandId,
        nonce: [u8; 16],
        expires: u64,
        now: u64,
    ) -> Result<bool, ApiError> {
        let mut seen = self.seen.lock().expect("nonce lock");
        let peer = seen.entry(brand.clone()).or_default();
        if peer.nonces.len() >= NONCES_PER_PEER_MAX / 2 && peer.next_expiry <= now {
            peer.nonces.retain(|_, e| *e > now);
            peer.next_expiry = peer.nonces.values().copied().min().unwrap_or(u64::MAX);
        }
        if peer.nonces.len() >= NONCES_PER_PEER_MAX {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::PeerRateLimited,
                "too many requests from this peer within the clock-skew window",
            ));
        }
        if peer.nonces.contains_key(&nonce) {
            return Ok(false);
        }
        peer.next_expiry = peer.next_expiry.min(expires);
        peer.nonces.insert(nonce, expires);
        Ok(true)
    }
}

fn unauthorized(code: ErrorCode, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail)
}

/// Verifies a peer request (as [`verify`]) and decodes its JSON body as `T`; `what` names the
/// body in the error (`invalid_body`, "not a {what}: ...").
pub fn verify_json<T: serde::de::DeserializeOwned>(
    fed: &Federation,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(Arc<Partner>, T), ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let sender = verify(fed, method, path, headers, body)?;
    let value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("not a {what}: {e}")))?;
    Ok((sender, value))
}

/// The four headers of a peer request, parsed and checked for form only: the signature, the
/// time and the nonce are not judged yet ([`check_signed`], [`verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHeaders {
    pub sender: BrandId,
    pub time_ms: u64,
    /// The nonce as sent: 32 lowercase hex digits (it is part of the signed message).
    pub nonce_hex: String,
    pub nonce: [u8; 16],
    pub signature: [u8; 64],
}

/// Reads and parses the headers of a peer request (spec/federation.md §2). Refuses a missing
/// header with `peer_unsigned`, and a malformed one (brand id, decimal time of at most 16
/// digits, 32 lowercase hex digits of nonce, base64 of a 64-byte signature) likewise.
pub fn parse_headers(headers: &HeaderMap) -> Result<PeerHeaders, ApiError> {
    let get = |name: &str| -> Result<&str, ApiError> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                unauthorized(
                    ErrorCode::PeerUnsigned,
                    format!("a peer request needs the {name} header (spec/federation.md §2)"),
                )
            })
    };
    let (sender, time, nonce, sig) = (get(H_PEER)?, get(H_TIME)?, get(H_NONCE)?, get(H_SIGNATURE)?);
    let malformed =
        |what: &str| unauthorized(ErrorCode::PeerUnsigned, format!("malformed {what} header"));
    let sender: BrandId = sender.parse().map_err(|_| malformed(H_PEER))?;
    if time.is_empty() || time.len() > 16 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(H_TIME));
    }
    let time_ms: u64 = time.parse().map_err(|_| malformed(H_TIME))?;
    if nonce.len() != 32 || nonce.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(malformed(H_NONCE));
    }
    let nonce_bytes: [u8; 16] = hex::decode(nonce)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed(H_NONCE))?;
    let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed(H_SIGNATURE))?;
    Ok(PeerHeaders {
        sender,
        time_ms,
        nonce_hex: nonce.to_owned(),
        nonce: nonce_bytes,
        signature,
    })
}

/// Checks that `h.signature` is `key`'s strict Ed25519 signature over the [`message`] of a
/// request from `h.sender` to `receiver`; `peer_bad_signature` otherwise.
pub fn check_signed(
    key: &VerifyingKey,
    receiver: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    h: &PeerHeaders,
) -> Result<(), ApiError> {
    let msg = message(
        h.sender.as_str(),
        receiver,
        method,
        path_and_query,
        body,
        h.time_ms,
        &h.nonce_hex,
    );
    key.verify_strict(msg.as_bytes(), &Signature::from_bytes(&h.signature))
        .map_err(|_| {
            unauthorized(
                ErrorCode::PeerBadSignature,
                format!(
                    "the signature does not verify with {}'s pinned key",
                    h.sender
                ),
            )
        })
}

/// Verifies a peer request; returns the pinned, unfrozen partner that sent it.
pub fn verify(
    fed: &Federation,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Arc<Partner>, ApiError> {
    let h = parse_headers(headers)?;
    let sender = &h.sender;
    let partner = fed
        .partner(sender)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| {
            unauthorized(
                ErrorCode::UnknownPeer,
                format!("{sender} is not a pinned partner of this node"),
            )
        })?;
    let key = partner.verifier.as_ref().expect("filtered on pinned");
    let vk = VerifyingKey::from_bytes(&key.public_key()).map_err(ApiError::internal)?;
    check_signed(
        &vk,
        fed.brand.as_str(),
        method.as_str(),
        path_and_query,
        body,
        &h,
    )?;
    let (time_ms, nonce_bytes) = (h.time_ms, h.nonce);
    let now = crate::sequencer::now().get();
    let skew = fed.settings.peer_clock_skew_ms;
    if time_ms.abs_diff(now) > skew || time_ms < fed.started_ms {
        return Err(unauthorized(
            ErrorCode::PeerStale,
            format!(
                "request time {time_ms} is more than {skew} ms from this node's clock {now}, or before it started"
            ),
        ));
    }
    if !fed
        .nonces
        .insert(sender, nonce_bytes, time_ms.saturating_add(2 * skew), now)?
    {
        return Err(unauthorized(
            ErrorCode::PeerReplayed,
            "this nonce was used before: a replayed request",
        ));
    }
    if partner.frozen.load(Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PartnerFrozen,
            format!(
                "the partnership with {sender} is frozen by evidence; an operator must clear it"
            ),
        ));
    }
    Ok(partner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_every_field() {
        let base = message("a", "b", "POST", "/x?y=1", b"body", 5, "00");
        for other in [
            message("c", "b", "POST", "/x?y=1", b"body", 5, "00"),
            message("a", "c", "POST", "/x?y=1", b"body", 5, "00"),
            message("a", "b", "GET", "/x?y=1", b"body", 5, "00"),
            message("a", "b", "POST", "/x?y=2", b"body", 5, "00"),
            message("a", "b", "POST", "/x?y=1", b"bodz", 5, "00"),
            message("a", "b", "POST", "/x?y=1", b"body", 6, "00"),
            message("a", "b", "POST", "/x?y=1", b"body", 5, "01"),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.starts_with("loyalty-peer-request/v1\na\nb\nPOST\n/x?y=1\n"));
    }

    fn signed_headers(key: &ed25519_dalek::SigningKey, time_ms: u64, body: &[u8]) -> HeaderMap {
        let nonce = "00112233445566778899aabbccddeeff";
        let msg = message("a", "b", "POST", "/v1/peer/x", body, time_ms, nonce);
        let sig =
            base64::engine::general_purpose::STANDARD.encode(key.sign(msg.as_bytes()).to_bytes());
        let mut h = HeaderMap::new();
        for (name, value) in [
            (H_PEER, "a".to_string()),
            (H_TIME, time_ms.to_string()),
            (H_NONCE, nonce.to_string()),
            (H_SIGNATURE, sig),
        ] {
            h.insert(name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn parsed_headers_of_a_signed_request_check_and_a_changed_part_does_not() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let headers = signed_headers(&key, 1_700_000_000_000, b"{}");
        let h = parse_headers(&headers).unwrap();
        assert_eq!((h.sender.as_str(), h.time_ms), ("a", 1_700_000_000_000));
        assert_eq!(h.nonce[0], 0x00);
        assert_eq!(h.nonce[15], 0xff);
        check_signed(&vk, "b", "POST", "/v1/peer/x", b"{}", &h).unwrap();
        for (receiver, method, path, body) in [
            ("c", "POST", "/v1/peer/x", &b"{}"[..]),
            ("b", "PUT", "/v1/peer/x", b"{}"),
            ("b", "POST", "/v1/peer/y", b"{}"),
            ("b", "POST", "/v1/peer/x", b"{ }"),
        ] {
            let err = check_signed(&vk, receiver, method, path, body, &h).unwrap_err();
            assert_eq!(err.code, "peer_bad_signature");
        }
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
        let err = check_signed(&other, "b", "POST", "/v1/peer/x", b"{}", &h).unwrap_err();
        assert_eq!(err.code, "peer_bad_signature");
        let mut later = h.clone();
        later.time_ms += 1;
        let err = check_signed(&vk, "b", "POST", "/v1/peer/x", b"{}", &later).unwrap_err();
        assert_eq!(err.code, "peer_bad_signature");
    }

    #[test]
    fn missing_and_malformed_peer_headers_are_unsigned() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let good = signed_headers(&key, 5, b"");
        for name in [H_PEER, H_TIME, H_NONCE, H_SIGNATURE] {
            let mut h = good.clone();
            h.remove(name);
            assert_eq!(
                parse_headers(&h).unwrap_err().code,
                "peer_unsigned",
                "{name}"
            );
        }
        for (name, value) in [
            (H_PEER, "A"),
            (H_TIME, ""),
            (H_TIME, "-1"),
            (H_TIME, "12345678901234567"),
            (H_NONCE, "00112233445566778899AABBCCDDEEFF"),
            (H_NONCE, "0011223344556677"),
            (H_NONCE, "zz112233445566778899aabbccddeeff"),
            (H_SIGNATURE, "AAAA"),
            (H_SIGNATURE, "not base64"),
        ] {
            let mut h = good.clone();
            h.insert(name, value.parse().unwrap());
            assert_eq!(
                parse_headers(&h).unwrap_err().code,
                "peer_unsigned",
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn nonce_cache_refuses_replays() {
        let c = NonceCache::default();
        let b: BrandId = "b".parse().unwrap();
        assert!(c.insert(&b, [1; 16], 100, 0).unwrap());
        assert!(!c.insert(&b, [1; 16], 100, 0).unwrap());
        assert!(c.insert(&"c".parse().unwrap(), [1; 16], 100, 0).unwrap());
    }

    #[test]
    fn one_peer_cannot_crowd_out_another_and_expired_nonces_are_forgotten() {
        let c = NonceCache::default();
        let (b, d): (BrandId, BrandId) = ("b".parse().unwrap(), "d".parse().unwrap());
        for i in 0..NONCES_PER_PEER_MAX as u64 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&i.to_be_bytes());
            assert!(c.insert(&b, n, 100, 0).unwrap());
        }
        let err = c.insert(&b, [9; 16], 100, 0).unwrap_err();
        assert_eq!(err.code, "peer_rate_limited");
        assert!(c.insert(&d, [9; 16], 100, 0).unwrap());
        // Once they expire, b's nonces are pruned and b is served again.
        assert!(c.insert(&b, [9; 16], 300, 200).unwrap());
    }
}
