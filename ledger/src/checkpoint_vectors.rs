//! Deterministic test vectors for `spec/vectors/checkpoint.json`.
//!
//! Keys come from fixed seeds `SHA-256("loyalty-ledger checkpoint vectors v1 " || key
//! name)`; Ed25519 signing is deterministic, so [`generate`] always returns
//! the same document.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::checkpoint::*;
use crate::witness::{verify_cosigned_checkpoint, WitnessPolicy};
use serde_json::{Map, Value};

/// The fixed secret seed of the vector key named `name`.
pub fn seed(name: &str) -> [u8; 32] {
    Sha256::digest(format!("loyalty-ledger checkpoint vectors v1 {name}")).into()
}

struct Case {
    origin: &'static str,
    size: u64,
    root: [u8; 32],
    extensions: &'static [&'static str],
    witnesses: &'static [(&'static str, u64)],
}

fn cases() -> Vec<Case> {
    let brand_a = "loyalty.example/brand-a";
    let brand_b = "loyalty.example/brand-b";
    vec![
        Case {
            origin: brand_a,
            size: 0,
            root: Sha256::digest(b"").into(),
            extensions: &[],
            witnesses: &[],
        },
        Case {
            // One empty leaf: the RFC 6962 leaf hash SHA-256(0x00).
            origin: brand_a,
            size: 1,
            root: Sha256::digest([0u8]).into(),
            extensions: &[],
            witnesses: &[],
        },
        Case {
            origin: brand_a,
            size: 12345,
            root: Sha256::digest(b"vector root 12345").into(),
            extensions: &[],
            witnesses: &[],
        },
        Case {
            // 2^53 - 1: the largest size every JSON reader represents exactly.
            origin: brand_b,
            size: 9_007_199_254_740_991,
            root: Sha256::digest(b"vector root large").into(),
            extensions: &[],
            witnesses: &[],
        },
        Case {
            origin: brand_b,
            size: 77,
            root: Sha256::digest(b"vector root 77").into(),
            extensions: &["loyalty.example/ext/epoch 42"],
            witnesses: &[],
        },
        Case {
            origin: brand_a,
            size: 42,
            root: Sha256::digest(b"vector root 42").into(),
            extensions: &[],
            witnesses: &[("witness.example/w1", 1_700_000_000)],
        },
    ]
}

/// The vector document: a JSON array of objects with keys `origin`, `size`,
/// `root_b64`, `verifier_key`, `note` and, for cosigned cases, `cosigners` (witness
/// verifier key strings). Keys are inserted in sorted order so the serialization is
/// the same with or without serde_json's `preserve_order` feature.
pub fn generate() -> Value {
    let mut out = Vec::new();
    for case in cases() {
        // Fixed, valid names: construction cannot fail.
        let log = NoteSigner::from_seed(case.origin, &seed(case.origin))
            .expect("vector log names are valid key names");
        let cp = Checkpoint {
            origin: case.origin.to_owned(),
            size: case.size,
            root: case.root,
            extensions: case.extensions.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut note = sign_checkpoint(&cp, &log).expect("vector checkpoints are valid");
        let mut cosigners = Vec::new();
        for (name, time) in case.witnesses {
            let w = CosignatureSigner::from_seed(name, &seed(name))
                .expect("vector witness names are valid key names");
            let sig = w
                .cosign(&note.text, *time)
                .expect("vector texts and times are valid");
            note.signatures.push(sig);
            cosigners.push(Value::String(w.verifier_key_string()));
        }
        let mut obj = Map::new();
        if !cosigners.is_empty() {
            obj.insert("cosigners".into(), Value::Array(cosigners));
        }
        obj.insert("note".into(), Value::String(note.to_string()));
        obj.insert("origin".into(), Value::String(cp.origin.clone()));
        obj.insert("root_b64".into(), Value::String(BASE64.encode(cp.root)));
        obj.insert("size".into(), Value::from(cp.size));
        obj.insert(
            "verifier_key".into(),
            Value::String(log.verifier_key_string()),
        );
        out.push(Value::Object(obj));
    }
    Value::Array(out)
}

/// The file contents: [`generate`] pretty-printed (2-space indent) plus a final newline.
pub fn render() -> String {
    let mut s = serde_json::to_string_pretty(&generate())
        .expect("serializing a serde_json::Value cannot fail");
    s.push('\n');
    s
}

/// Verifies every case of a vector document: parses the verifier key, opens the note
/// with it, compares origin, size and root, checks the note re-serializes to the same
/// bytes, and (when `cosigners` is present) requires every listed cosigner's
/// cosignature. Returns a message naming the first failing case.
pub fn check(doc: &Value) -> Result<(), String> {
    let cases = doc.as_array().ok_or("document is not a JSON array")?;
    if cases.is_empty() {
        return Err("document has no cases".into());
    }
    for (i, case) in cases.iter().enumerate() {
        check_case(case).map_err(|e| format!("case {i}: {e}"))?;
    }
    Ok(())
}

fn field<'v>(case: &'v Value, key: &str) -> Result<&'v str, String> {
    case.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {key:?}"))
}

fn check_case(case: &Value) -> Result<(), String> {
    let origin = field(case, "origin")?;
    let root_b64 = field(case, "root_b64")?;
    let note_text = field(case, "note")?;
    let size = case
        .get("size")
        .and_then(Value::as_u64)
        .ok_or("missing integer field \"size\"")?;
    let log = NoteVerifier::parse(field(case, "verifier_key")?)
        .map_err(|e| format!("verifier_key: {e}"))?;
    let (cp, note) = open_checkpoint(note_text, &log).map_err(|e| format!("note: {e}"))?;
    if cp.origin != origin {
        return Err(format!("origin {:?} != {:?}", cp.origin, origin));
    }
    if cp.size != size {
        return Err(format!("size {} != {}", cp.size, size));
    }
    if BASE64.encode(cp.root) != root_b64 {
        return Err("root_b64 does not match the note".into());
    }
    if note.to_string() != note_text {
        return Err("note does not re-serialize to the same bytes".into());
    }
    if let Some(list) = case.get("cosigners") {
        let list = list.as_array().ok_or("\"cosigners\" is not an array")?;
        let witnesses = list
            .iter()
            .map(|v| {
                let s = v.as_str().ok_or("cosigner is not a string")?;
                NoteVerifier::parse(s).map_err(|e| format!("cosigner {s:?}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let policy = WitnessPolicy {
            log,
            quorum: witnesses.len(),
            witnesses,
        };
        verify_cosigned_checkpoint(note_text, &policy).map_err(|e| format!("cosigned: {e}"))?;
    }
    Ok(())
}

// The signed-checkpoint stack's tests (notes, checkpoints, cosignatures, witness policies and
// these vectors) live here, above every layer of it, so that they may use them all.
#[cfg(test)]
mod tests;
