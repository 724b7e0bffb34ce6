//! `docs/check_receipt.py`, the auditor's by-hand receipt check, follows spec/protocol.md §5:
//! run on the spec's vector receipt and on receipts each broken in one way the old script let
//! through (the note split at its first empty line; no origin, base64 or canonical-entry checks).
//!
//! Runs when `python3` with the `cryptography` package is present, and says so when it skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `python3 -c 'import cryptography'` works here.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 with the `cryptography` package is not installed");
    }
    ok
}

/// The vector log's receipt and verifier key (spec/protocol.md §9).
fn vector() -> (Value, String) {
    let text = std::fs::read_to_string(root().join("spec/vectors/entries.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let log = &v["log"];
    (
        log["receipt"].clone(),
        log["verifier_key"].as_str().unwrap().to_owned(),
    )
}

/// Runs the script on `receipt` with `key`: (exit code, stdout).
fn run(receipt: &Value, key: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, serde_json::to_vec(receipt).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("docs/check_receipt.py"))
        .arg(&path)
        .arg(key)
        .output()
        .expect("python3 runs");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn assert_refused(receipt: &Value, key: &str, step_and_reason: &str) {
    let (code, out) = run(receipt, key);
    assert_eq!(code, 1, "accepted, expected {step_and_reason}: {out}");
    assert!(
        out.contains(&format!("REFUSED at {step_and_reason}")),
        "expected {step_and_reason}: {out}"
    );
}

/// A verifier key named `name` and a note signed by it over `text` (spec/checkpoint.md §1-§2).
fn signed_note(name: &str, text: &str) -> (String, String) {
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let mut typed = vec![0x01];
    typed.extend_from_slice(sk.verifying_key().as_bytes());
    let key_id = &Sha256::digest([name.as_bytes(), b"\n", &typed].concat())[..4];
    let key = format!("{name}+{}+{}", hex::encode(key_id), B64.encode(&typed));
    let sig = sk.sign(text.as_bytes());
    let blob = [key_id, &sig.to_bytes()[..]].concat();
    (
        key,
        format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob)),
    )
}

#[test]
fn check_receipt_accepts_the_vector_receipt() {
    if !python_ready() {
        return;
    }
    let (receipt, key) = vector();
    let (code, out) = run(&receipt, &key);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature OK"), "{out}");
    assert!(out.contains(receipt["entry"].as_str().unwrap()), "{out}");
}

#[test]
fn check_receipt_splits_the_note_at_its_last_empty_line() {
    if !python_ready() {
        return;
    }
    let (mut receipt, key) = vector();
    // The valid signature now sits in the note text: the signature lines after the last empty
    // line hold no signature by the key.
    let note = receipt["checkpoint"].as_str().unwrap().to_owned();
    let forged = format!("{note}\n\u{2014} someone AAAAAAAA\n");
    receipt["checkpoint"] = Value::String(forged);
    assert_refused(&receipt, &key, "signature");
}

#[test]
fn check_receipt_refuses_non_canonical_base64_in_a_signature() {
    if !python_ready() {
        return;
    }
    let (mut receipt, key) = vector();
    let note = receipt["checkpoint"].as_str().unwrap().to_owned();
    // 68 bytes end in one `=`: the character before it carries 2 unused bits; setting one
    // changes the spelling, not the bytes.
    let pad = note.rfind("=\n").unwrap();
    let last = note.as_bytes()[pad - 1] as char;
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let i = alphabet.find(last).unwrap();
    let other = alphabet.as_bytes()[i ^ 1] as char;
    let mut bent = note.clone();
    bent.replace_range(pad - 1..pad, &other.to_string());
    receipt["checkpoint"] = Value::String(bent);
    assert_refused(
        &receipt,
        &key,
        "signature: a signature is not canonical base64",
    );
}

#[test]
fn check_receipt_refuses_a_checkpoint_of_another_origin() {
    if !python_ready() {
        return;
    }
    let (mut receipt, _) = vector();
    let note = receipt["checkpoint"].as_str().unwrap().to_owned();
    let text = note[..note.find("\n\n").unwrap() + 1].to_owned();
    let other = text.replacen("loyalty.example/brand-a", "loyalty.example/brand-z", 1);
    // Signed by a key named brand-a over a checkpoint of brand-z's log.
    let (key, forged) = signed_note("loyalty.example/brand-a", &other);
    receipt["checkpoint"] = Value::String(forged);
    assert_refused(&receipt, &key, "checkpoint: origin");
    // The same key over brand-a's own text is accepted, so the origin is what was refused.
    let (key, good) = signed_note("loyalty.example/brand-a", &text);
    receipt["checkpoint"] = Value::String(good);
    assert_eq!(run(&receipt, &key).0, 0);
}

#[test]
fn check_receipt_refuses_an_entry_that_is_not_canonical() {
    if !python_ready() {
        return;
    }
    let (mut receipt, key) = vector();
    let entry = receipt["entry"].as_str().unwrap().to_owned();
    receipt["entry"] = Value::String(entry.replacen(",", ", ", 1));
    assert_refused(&receipt, &key, "entry: non_canonical");
    receipt["entry"] = Value::String(entry.replacen("\"v\":1", "\"v\":1.0", 1));
    assert_refused(&receipt, &key, "entry: non_integer");
    // A changed byte that is still canonical is caught by the inclusion proof.
    receipt["entry"] = Value::String(entry.replacen("post-0002", "post-0003", 1));
    assert_refused(&receipt, &key, "inclusion");
}

/// Step 4 against the spec's vectors: every example entry decodes and every invalid one is
/// refused with its class (spec/protocol.md §2.2, §3, §9).
#[test]
fn check_receipt_decodes_entries_as_the_spec_vectors_say() {
    if !python_ready() {
        return;
    }
    let out = Command::new("python3")
        .arg(root().join("docs/check_receipt.py"))
        .arg("--vectors")
        .arg(root().join("spec/vectors/entries.json"))
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 wrong"), "{text}");
}
