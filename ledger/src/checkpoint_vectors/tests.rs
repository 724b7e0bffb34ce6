//! Tests of the signed-checkpoint stack: notes, checkpoints, cosignatures, witness policies
//! and the vectors.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::*;
use crate::checkpoint_vectors as vectors;
use crate::witness::*;
use proptest::prelude::*;

const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn signer(name: &str) -> NoteSigner {
    NoteSigner::from_seed(name, &vectors::seed(name)).unwrap()
}

fn cosigner(name: &str) -> CosignatureSigner {
    CosignatureSigner::from_seed(name, &vectors::seed(name)).unwrap()
}

fn malformed(reason: &'static str) -> NoteError {
    NoteError::Malformed { reason }
}

fn cp_malformed(reason: &'static str) -> CheckpointError {
    CheckpointError::Malformed { reason }
}

fn sample_checkpoint(origin: &str) -> Checkpoint {
    Checkpoint {
        origin: origin.to_owned(),
        size: 10,
        root: Sha256::digest(b"root").into(),
        extensions: vec![],
    }
}

/// A signed checkpoint note for `log`, cosigned by `witnesses` at time 1000 + i.
fn cosigned_note(log: &NoteSigner, witnesses: &[&CosignatureSigner]) -> String {
    let mut note = sign_checkpoint(&sample_checkpoint(log.name()), log).unwrap();
    for (i, w) in witnesses.iter().enumerate() {
        let sig = w.cosign(&note.text, 1000 + i as u64).unwrap();
        assert!(note.push_signature(sig).unwrap());
    }
    note.to_string()
}

// ----- known answers ---------------------------------------------------------

#[test]
fn go_sumdb_note_known_answer() {
    let v = NoteVerifier::parse(GO_VKEY).unwrap();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(v.to_string(), GO_VKEY);
    let msg = format!("{GO_TEXT}\n{GO_SIG_LINE}");
    let note = SignedNote::parse(&msg).unwrap();
    assert_eq!(note.text, GO_TEXT);
    assert_eq!(note.to_string(), msg);
    assert_eq!(
        verify_note(&note, std::slice::from_ref(&v)).unwrap(),
        vec![&v]
    );

    // The Go private key "PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)>".
    let skey = BASE64.decode(GO_SKEY_B64).unwrap();
    assert_eq!(skey[0], 0x01);
    let seed: [u8; 32] = skey[1..].try_into().unwrap();
    let s = NoteSigner::from_seed("PeterNeumann", &seed).unwrap();
    assert_eq!(s.verifier_key_string(), GO_VKEY);
    assert_eq!(SignedNote::sign(GO_TEXT, &[&s]).unwrap().to_string(), msg);
}

#[test]
fn c2sp_signed_note_example_verifies() {
    let v = NoteVerifier::parse(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    )
    .unwrap();
    let msg = "This is an example message.\n\n\u{2014} example.com/foo \
               Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    let note = SignedNote::parse(msg).unwrap();
    assert_eq!(verify_note(&note, &[v]).unwrap().len(), 1);
}

// ----- keys ------------------------------------------------------------------

#[test]
fn verifier_key_round_trip_and_id() {
    let s = signer("loyalty.example/brand-a");
    let vk = s.verifier_key_string();
    let v: NoteVerifier = vk.parse().unwrap();
    assert_eq!(v, s.verifier());
    assert_eq!(v.to_string(), vk);
    assert_eq!(v.signature_type(), SignatureType::Ed25519);
    assert_eq!(v.public_key(), s.public_key());
    let mut pre = b"loyalty.example/brand-a\n\x01".to_vec();
    pre.extend_from_slice(&s.public_key());
    assert_eq!(v.key_id(), Sha256::digest(&pre)[..4]);
    assert_eq!(vk.split('+').nth(1).unwrap(), hex::encode(v.key_id()));

    let c = cosigner("witness.example/w1");
    let cv = NoteVerifier::parse(&c.verifier_key_string()).unwrap();
    assert_eq!(cv, c.verifier());
    assert_eq!(cv.signature_type(), SignatureType::CosignatureV1);
    let mut pre = b"witness.example/w1\n\x04".to_vec();
    pre.extend_from_slice(&c.public_key());
    assert_eq!(cv.key_id(), Sha256::digest(&pre)[..4]);
    assert_eq!(
        NoteVerifier::from_public_key(c.name(), SignatureType::CosignatureV1, &c.public_key())
            .unwrap(),
        cv
    );
    // Same name and key, different type: different key IDs.
    let same = CosignatureSigner::from_seed("x", &[7; 32]).unwrap();
    let same_log = NoteSigner::from_seed("x", &[7; 32]).unwrap();
    assert_ne!(same.key_id(), same_log.key_id());
}

#[test]
fn verifier_key_rejections() {
    let good = GO_VKEY;
    let key_b64 = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let cases: Vec<(String, NoteError)> = vec![
        (
            "".into(),
            NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key name",
            },
        ),
        (
            "PeterNeumann".into(),
            NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key name",
            },
        ),
        (
            "PeterNeumann+c74f20a3".into(),
            NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key id",
            },
        ),
        (
            format!("+c74f20a3+{key_b64}"),
            NoteError::InvalidKeyName { name: "".into() },
        ),
        (
            format!("Peter Neumann+c74f20a3+{key_b64}"),
            NoteError::InvalidKeyName {
                name: "Peter Neumann".into(),
            },
        ),
        (
            format!("PeterNeumann+C74F20A3+{key_b64}"),
            NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            },
        ),
        (
            format!("PeterNeumann+c74f20a+{key_b64}"),
            NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            },
        ),
        (
            format!("PeterNeumann+c74f20a30+{key_b64}"),
            NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            },
        ),
        (
            format!("PeterNeumann+c74f20g3+{key_b64}"),
            NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            },
        ),
        (
            "PeterNeumann+c74f20a3+".into(),
            NoteError::MalformedVerifierKey {
                reason: "key is empty",
            },
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T".into(),
            NoteError::MalformedVerifierKey {
                reason: "key is not canonical padded base64",
            },
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=".into(),
            NoteError::MalformedVerifierKey {
                reason: "key is not canonical padded base64",
            },
        ),
        // From the Go tests: this one has non-canonical base64 trailing bits (Go accepts them).
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==".into(),
            NoteError::MalformedVerifierKey {
                reason: "key is not canonical padded base64",
            },
        ),
        // Unknown algorithm, with adjusted key hash (Go tests).
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".into(),
            NoteError::UnsupportedSignatureType(0x65),
        ),
        (
            format!("PeterNeumann+c74f20a4+{key_b64}"),
            NoteError::KeyIdMismatch {
                claimed: [0xc7, 0x4f, 0x20, 0xa4],
                computed: [0xc7, 0x4f, 0x20, 0xa3],
            },
        ),
        (
            format!("PeterNeumanm+c74f20a3+{key_b64}"),
            NoteError::KeyIdMismatch {
                claimed: [0xc7, 0x4f, 0x20, 0xa3],
                computed: key_id(
                    "PeterNeumanm",
                    SignatureType::Ed25519,
                    &NoteVerifier::parse(good).unwrap().public_key(),
                ),
            },
        ),
    ];
    for (s, want) in cases {
        assert_eq!(NoteVerifier::parse(&s), Err(want), "input {s:?}");
    }
    // Wrong key length with a matching key ID (key ID over the whole material).
    for len in [31usize, 33] {
        let material: Vec<u8> = std::iter::once(1u8)
            .chain(std::iter::repeat_n(5, len))
            .collect();
        let mut h = Sha256::new();
        h.update(b"k\n");
        h.update(&material);
        let s = format!(
            "k+{}+{}",
            hex::encode(&h.finalize()[..4]),
            BASE64.encode(&material)
        );
        assert_eq!(
            NoteVerifier::parse(&s),
            Err(NoteError::MalformedVerifierKey {
                reason: "Ed25519 public key is not 32 bytes"
            })
        );
    }
    // A 32-byte string that is not a valid Ed25519 point, with a matching key ID.
    let mut bad_pk = [0u8; 32];
    bad_pk[0] = 2;
    bad_pk[31] = 0x80;
    let mut found = None;
    for y in 2u8..=255 {
        bad_pk[0] = y;
        if VerifyingKey::from_bytes(&bad_pk).is_err() {
            found = Some(bad_pk);
            break;
        }
    }
    let pk = found.expect("some y coordinate is not on the curve");
    let id = key_id("k", SignatureType::Ed25519, &pk);
    let mut material = vec![1u8];
    material.extend_from_slice(&pk);
    let s = format!("k+{}+{}", hex::encode(id), BASE64.encode(material));
    assert_eq!(
        NoteVerifier::parse(&s),
        Err(NoteError::MalformedVerifierKey {
            reason: "not a valid Ed25519 public key"
        })
    );
}

#[test]
fn signer_name_rejections() {
    for name in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\nb", "a\u{2003}b"] {
        assert_eq!(
            NoteSigner::from_seed(name, &[1; 32]).unwrap_err(),
            NoteError::InvalidKeyName { name: name.into() }
        );
        assert!(CosignatureSigner::from_seed(name, &[1; 32]).is_err());
    }
    assert!(NoteSigner::generate("fresh.example/k", &mut rand_core::OsRng).is_ok());
    assert!(CosignatureSigner::generate("fresh.example/w", &mut rand_core::OsRng).is_ok());
    let dbg = format!("{:?}", signer("a"));
    assert!(dbg.contains("NoteSigner") && !dbg.contains("key:"));
}

// ----- notes -------------------------------------------------------------------

#[test]
fn note_round_trip_and_verify() {
    let a = signer("a.example/a");
    let b = signer("b.example/b");
    let text = "line one\n\nline three after a blank line\n";
    let note = SignedNote::sign(text, &[&a, &b]).unwrap();
    let s = note.to_string();
    assert!(s.starts_with(text));
    assert!(s.contains("\n\n\u{2014} a.example/a "));
    let parsed = SignedNote::parse(&s).unwrap();
    assert_eq!(parsed, note);
    assert_eq!(SignedNote::parse_bytes(s.as_bytes()).unwrap(), note);
    let vs = [a.verifier(), b.verifier()];
    assert_eq!(verify_note(&parsed, &vs).unwrap(), vec![&vs[0], &vs[1]]);
    // Only one known key: the other signature is ignored.
    assert_eq!(verify_note(&parsed, &vs[1..]).unwrap(), vec![&vs[1]]);
    // Duplicated verifier in the list is reported once.
    let dup = [a.verifier(), a.verifier()];
    assert_eq!(verify_note(&parsed, &dup).unwrap().len(), 1);
    // No known key at all.
    assert_eq!(
        verify_note(&parsed, &[signer("c").verifier()]),
        Err(NoteError::NoVerifiedSignatures)
    );
    assert_eq!(
        verify_note(&parsed, &[]),
        Err(NoteError::NoVerifiedSignatures)
    );
}

#[test]
fn note_parse_rejections() {
    let a = signer("a");
    let good = SignedNote::sign("hello\n", &[&a]).unwrap().to_string();
    let line = good.strip_prefix("hello\n\n").unwrap().to_owned();
    let b64 = line
        .strip_prefix("\u{2014} a ")
        .unwrap()
        .trim_end()
        .to_owned();
    let cases: Vec<(String, NoteError)> = vec![
        (
            "".into(),
            malformed("missing blank line before the signatures"),
        ),
        (
            "hello\n".into(),
            malformed("missing blank line before the signatures"),
        ),
        (
            format!("hello\n{line}"),
            malformed("missing blank line before the signatures"),
        ),
        ("hello\n\n".into(), malformed("note has no signature lines")),
        (
            good.trim_end_matches('\n').to_owned(),
            malformed("last signature line does not end with a newline"),
        ),
        // A trailing blank line makes the last blank line the separator: no signatures.
        (
            format!("hello\n\n{line}\n"),
            malformed("note has no signature lines"),
        ),
        (
            format!("hello\n\n{line}{line}x\n"),
            malformed("signature line does not start with em dash and space"),
        ),
        (
            format!("hello\n\n- a {b64}\n"),
            malformed("signature line does not start with em dash and space"),
        ),
        (
            format!("hello\n\n\u{2014}a {b64}\n"),
            malformed("signature line does not start with em dash and space"),
        ),
        (
            format!("hello\n\n\u{2014} a{b64}\n"),
            malformed("signature line has no space after the key name"),
        ),
        (
            format!("hello\n\n\u{2014}  a {b64}\n"),
            NoteError::InvalidKeyName { name: "".into() },
        ),
        (
            format!("hello\n\n\u{2014} a+b {b64}\n"),
            NoteError::InvalidKeyName { name: "a+b".into() },
        ),
        (
            "hello\n\n\u{2014} a \n".into(),
            malformed("signature line has an empty signature"),
        ),
        (
            format!("hello\n\n\u{2014} a  {b64}\n"),
            malformed("signature is not canonical padded base64"),
        ),
        (
            format!("hello\n\n\u{2014} a {b64} \n"),
            malformed("signature is not canonical padded base64"),
        ),
        (
            format!("hello\n\n\u{2014} a {}\n", b64.trim_end_matches('=')),
            malformed("signature is not canonical padded base64"),
        ),
        (
            format!("hello\n\n\u{2014} a {}\n", b64.replace('=', "")),
            malformed("signature is not canonical padded base64"),
        ),
        (
            "hello\n\n\u{2014} a !!!!\n".into(),
            malformed("signature is not canonical padded base64"),
        ),
        (
            "hello\n\n\u{2014} a AAAAAA==\n".into(),
            malformed("signature is shorter than key id plus one byte"),
        ),
        (
            format!("hel\rlo\n\n{line}"),
            malformed("note contains an ASCII control character other than newline"),
        ),
        (
            format!("hello\n\n{}\r\n", line.trim_end()),
            malformed("note contains an ASCII control character other than newline"),
        ),
        (
            format!("hel\0lo\n\n{line}"),
            malformed("note contains an ASCII control character other than newline"),
        ),
        (
            format!("hel\tlo\n\n{line}"),
            malformed("note contains an ASCII control character other than newline"),
        ),
    ];
    for (s, want) in cases {
        assert_eq!(SignedNote::parse(&s), Err(want), "input {s:?}");
    }
    // A blank line between signature lines moves the split: the first signature line
    // becomes part of the text (per the "last blank line" rule) and no longer verifies.
    let shifted = SignedNote::parse(&format!("hello\n\n{line}\n{line}")).unwrap();
    assert_eq!(shifted.text, format!("hello\n\n{line}"));
    assert_eq!(
        verify_note(&shifted, &[a.verifier()]),
        Err(NoteError::BadSignature {
            name: "a".into(),
            key_id: a.key_id()
        })
    );
    // Non-canonical trailing bits in the base64 signature.
    let mut chars: Vec<char> = b64.chars().collect();
    let last = chars.len() - 2; // character before the single '='
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let idx = alphabet.find(chars[last]).unwrap();
    chars[last] = alphabet.as_bytes()[idx ^ 1] as char;
    let noncanon: String = chars.into_iter().collect();
    assert_eq!(
        SignedNote::parse(&format!("hello\n\n\u{2014} a {noncanon}\n")),
        Err(malformed("signature is not canonical padded base64"))
    );
    // Non-UTF-8.
    let mut bytes = good.clone().into_bytes();
    bytes[1] = 0xff;
    assert_eq!(SignedNote::parse_bytes(&bytes), Err(NoteError::NotUtf8));
    // Size limit.
    let big = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_SIZE));
    assert_eq!(
        SignedNote::parse(&big),
        Err(NoteError::TooLarge {
            size: big.len(),
            max: MAX_NOTE_SIZE
        })
    );
    assert!(matches!(
        SignedNote::parse_bytes(big.as_bytes()),
        Err(NoteError::TooLarge { .. })
    ));
    // Signature count limit: MAX_SIGNATURES accepted, one more rejected.
    let many = format!("hello\n\n{}", line.repeat(MAX_SIGNATURES));
    assert_eq!(
        SignedNote::parse(&many).unwrap().signatures.len(),
        MAX_SIGNATURES
    );
    let too_many = format!("hello\n\n{}", line.repeat(MAX_SIGNATURES + 1));
    assert_eq!(
        SignedNote::parse(&too_many),
        Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES
        })
    );
}

#[test]
fn note_text_rules_for_signing() {
    let a = signer("a");
    assert_eq!(
        SignedNote::sign("no newline", &[&a]),
        Err(malformed("note text does not end with a newline"))
    );
    assert_eq!(
        SignedNote::sign("", &[&a]),
        Err(malformed("note text does not end with a newline"))
    );
    assert_eq!(
        SignedNote::sign("a\u{7}\n", &[&a]),
        Err(malformed(
            "note contains an ASCII control character other than newline"
        ))
    );
    assert_eq!(
        SignedNote::sign("a\n", &[]),
        Err(malformed("a note needs at least one signature"))
    );
    // DEL is not a control character below U+0020: allowed by signed-note.
    assert!(SignedNote::sign("a\u{7f}\n", &[&a]).is_ok());
}

#[test]
fn signature_by_other_key_with_same_name() {
    let real = signer("loyalty.example/brand-a");
    let impostor = NoteSigner::from_seed("loyalty.example/brand-a", &[9; 32]).unwrap();
    assert_ne!(real.key_id(), impostor.key_id());
    let text = "hello\n";
    let forged = SignedNote::sign(text, &[&impostor]).unwrap();
    let parsed = SignedNote::parse(&forged.to_string()).unwrap();
    // Different key ID: an unknown key, ignored, so nothing verifies.
    assert_eq!(
        verify_note(&parsed, &[real.verifier()]),
        Err(NoteError::NoVerifiedSignatures)
    );
    assert_eq!(
        real.verifier().verify(text, &parsed.signatures[0]),
        Err(NoteError::UnknownKey {
            name: real.name().into(),
            key_id: impostor.key_id()
        })
    );
    // Impostor signature relabelled with the real key ID: known key, bad signature.
    let mut relabelled = parsed.clone();
    relabelled.signatures[0].key_id = real.key_id();
    let reparsed = SignedNote::parse(&relabelled.to_string()).unwrap();
    assert_eq!(
        verify_note(&reparsed, &[real.verifier()]),
        Err(NoteError::BadSignature {
            name: real.name().into(),
            key_id: real.key_id()
        })
    );
    // Same key ID but other name: unknown, ignored alongside a valid signature.
    let mut both = SignedNote::sign(text, &[&real]).unwrap();
    let mut other_name = both.signatures[0].clone();
    other_name.name = "someone.else".into();
    both.signatures.push(other_name);
    assert_eq!(verify_note(&both, &[real.verifier()]).unwrap().len(), 1);
}

#[test]
fn tampered_text_and_signature() {
    let a = signer("a");
    let note = SignedNote::sign("pay 10 points\n", &[&a]).unwrap();
    let s = note.to_string().replace("10", "99");
    let parsed = SignedNote::parse(&s).unwrap();
    let bad = NoteError::BadSignature {
        name: "a".into(),
        key_id: a.key_id(),
    };
    assert_eq!(verify_note(&parsed, &[a.verifier()]), Err(bad.clone()));
    // A bad signature from a known key fails the note even if another is valid.
    let mut two = note.clone();
    let mut broken = note.signatures[0].clone();
    broken.signature[0] ^= 1;
    two.signatures.push(broken.clone());
    assert_eq!(verify_note(&two, &[a.verifier()]), Err(bad.clone()));
    // Wrong signature length for the type.
    broken.signature.pop();
    assert_eq!(a.verifier().verify(&note.text, &broken), Err(bad));
}

#[test]
fn merging_signatures() {
    let a = signer("a");
    let b = signer("b");
    let text = "merge me\n";
    let mut n1 = SignedNote::sign(text, &[&a]).unwrap();
    let n2 = SignedNote::sign(text, &[&b, &a]).unwrap();
    assert_eq!(n1.add_signatures(&n2), Ok(1));
    assert_eq!(n1.signatures.len(), 2);
    assert_eq!(n1.add_signatures(&n2), Ok(0));
    assert_eq!(
        verify_note(&n1, &[a.verifier(), b.verifier()])
            .unwrap()
            .len(),
        2
    );
    let other = SignedNote::sign("other\n", &[&b]).unwrap();
    assert_eq!(n1.add_signatures(&other), Err(NoteError::TextMismatch));
    assert_eq!(n1.signatures.len(), 2);
    assert_eq!(n1.push_signature(a.sign(text)), Ok(false));
    // Limit on the number of signatures, with self unchanged on error.
    let mut full = SignedNote::sign(text, &[&a]).unwrap();
    for i in 0..MAX_SIGNATURES - 1 {
        let s = NoteSigner::from_seed(&format!("k{i}"), &[3; 32]).unwrap();
        assert_eq!(full.push_signature(s.sign(text)), Ok(true));
    }
    let extra = SignedNote::sign(text, &[&b]).unwrap();
    assert_eq!(
        full.add_signatures(&extra),
        Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES
        })
    );
    assert_eq!(full.signatures.len(), MAX_SIGNATURES);
    assert_eq!(SignedNote::parse(&full.to_string()).unwrap(), full);
}

// ----- checkpoints -------------------------------------------------------------

#[test]
fn checkpoint_text_round_trip() {
    let cps = [
        Checkpoint {
            origin: "o".into(),
            size: 0,
            root: Sha256::digest(b"").into(),
            extensions: vec![],
        },
        Checkpoint {
            origin: "loyalty.example/brand-a".into(),
            size: u64::MAX,
            root: [0xff; 32],
            extensions: vec![],
        },
        Checkpoint {
            origin: "o with space é".into(),
            size: 10,
            root: [1; 32],
            extensions: vec!["ext one".into(), "— two".into()],
        },
    ];
    for cp in cps {
        let t = cp.to_text();
        assert_eq!(Checkpoint::parse_text(&t).unwrap(), cp);
    }
    let t = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse_text(t).unwrap();
    assert_eq!(cp.size, 20_852_163);
    assert_eq!(cp.to_text(), t);
    assert_eq!(
        Checkpoint::parse_text(
            "o\n18446744073709551615\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        )
        .unwrap()
        .size,
        u64::MAX
    );
}

#[test]
fn checkpoint_parse_rejections() {
    let root = BASE64.encode([7u8; 32]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            "".into(),
            malformed("note text does not end with a newline").into(),
        ),
        (
            format!("o\n1\n{root}"),
            malformed("note text does not end with a newline").into(),
        ),
        (
            "o\n1\n".into(),
            cp_malformed("checkpoint has fewer than three lines"),
        ),
        (
            "o\n".into(),
            cp_malformed("checkpoint has fewer than three lines"),
        ),
        (format!("\n1\n{root}\n"), cp_malformed("origin is empty")),
        (
            format!("o\u{85}x\n1\n{root}\n"),
            cp_malformed("origin contains a control character"),
        ),
        (
            format!("o\u{7f}\n1\n{root}\n"),
            cp_malformed("origin contains a control character"),
        ),
        (
            format!("o\r\n1\n{root}\n"),
            malformed("note contains an ASCII control character other than newline").into(),
        ),
        (
            format!("o\n\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n+1\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n-1\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n 1\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n1 \n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n0x1\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n１\n{root}\n"),
            cp_malformed("tree size is not a decimal number"),
        ),
        (
            format!("o\n01\n{root}\n"),
            cp_malformed("tree size has a leading zero"),
        ),
        (
            format!("o\n00\n{root}\n"),
            cp_malformed("tree size has a leading zero"),
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            cp_malformed("tree size does not fit in 64 bits"),
        ),
        ("o\n1\n\n".into(), cp_malformed("root hash is not 32 bytes")),
        (
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            cp_malformed("root hash is not canonical padded base64"),
        ),
        (
            format!("o\n1\n{root} \n"),
            cp_malformed("root hash is not canonical padded base64"),
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([0xffu8; 32]).replace('/', "_")),
            cp_malformed("root hash is not canonical padded base64"),
        ),
        (
            "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd=\n".into(),
            cp_malformed("root hash is not canonical padded base64"),
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([7u8; 31])),
            cp_malformed("root hash is not 32 bytes"),
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([7u8; 33])),
            cp_malformed("root hash is not 32 bytes"),
        ),
        (
            format!("o\n1\n{}\n", BASE64.encode([7u8; 64])),
            cp_malformed("root hash is not 32 bytes"),
        ),
        (
            format!("o\n1\n{root}\n\n"),
            cp_malformed("extension line is empty"),
        ),
        (
            format!("o\n1\n{root}\next\n\n"),
            cp_malformed("extension line is empty"),
        ),
        (
            format!("o\n1\n{root}\next\u{9f}\n"),
            cp_malformed("extension line contains a control character"),
        ),
    ];
    for (s, want) in cases {
        assert_eq!(Checkpoint::parse_text(&s), Err(want), "input {s:?}");
    }
    let invalid = Checkpoint {
        origin: "a\nb".into(),
        ..sample_checkpoint("x")
    };
    assert_eq!(
        invalid.validate(),
        Err(cp_malformed("origin contains a control character"))
    );
    let log = signer("a\nb".split('\n').next().unwrap());
    assert_eq!(
        sign_checkpoint(&invalid, &log),
        Err(cp_malformed("origin contains a control character"))
    );
}

#[test]
fn open_checkpoint_round_trip_and_tampering() {
    let log = signer("loyalty.example/brand-a");
    let v = log.verifier();
    let cp = Checkpoint {
        extensions: vec!["ext".into()],
        ..sample_checkpoint(log.name())
    };
    let note = sign_checkpoint(&cp, &log).unwrap().to_string();
    let (got, parsed) = open_checkpoint(&note, &v).unwrap();
    assert_eq!(got, cp);
    assert_eq!(parsed.to_string(), note);

    let bad = CheckpointError::Note(NoteError::BadSignature {
        name: log.name().into(),
        key_id: log.key_id(),
    });
    // Tampered size.
    let t = note.replacen("\n10\n", "\n11\n", 1);
    assert_ne!(t, note);
    assert_eq!(open_checkpoint(&t, &v), Err(bad.clone()));
    // Tampered root.
    let root_b64 = BASE64.encode(cp.root);
    let t = note.replacen(&root_b64, &BASE64.encode([0u8; 32]), 1);
    assert_eq!(open_checkpoint(&t, &v), Err(bad.clone()));
    // Tampered extension.
    let t = note.replacen("ext\n", "exu\n", 1);
    assert_eq!(open_checkpoint(&t, &v), Err(bad));
    // Malformed tampering is reported as such.
    let t = note.replacen("\n10\n", "\n010\n", 1);
    assert_eq!(
        open_checkpoint(&t, &v),
        Err(cp_malformed("tree size has a leading zero"))
    );
    // Only signed by someone else.
    let other = signer("loyalty.example/brand-a-other");
    let t = SignedNote::sign(&cp.to_text(), &[&other])
        .unwrap()
        .to_string();
    assert_eq!(
        open_checkpoint(&t, &v),
        Err(CheckpointError::MissingLogSignature {
            origin: log.name().into()
        })
    );
    // A cosigner key cannot be the log key.
    let w = cosigner("w");
    assert_eq!(
        open_checkpoint(&note, &w.verifier()),
        Err(NoteError::WrongSignatureType {
            expected: SignatureType::Ed25519,
            got: SignatureType::CosignatureV1
        }
        .into())
    );
}

#[test]
fn origin_mismatch() {
    let log = signer("loyalty.example/brand-a");
    let cp = sample_checkpoint("loyalty.example/brand-b");
    let mismatch = CheckpointError::OriginMismatch {
        expected: "loyalty.example/brand-a".into(),
        got: "loyalty.example/brand-b".into(),
    };
    assert_eq!(sign_checkpoint(&cp, &log), Err(mismatch.clone()));
    // Validly signed by the log key, but over another origin.
    let note = SignedNote::sign(&cp.to_text(), &[&log])
        .unwrap()
        .to_string();
    assert_eq!(open_checkpoint(&note, &log.verifier()), Err(mismatch));
}

// ----- cosignatures ------------------------------------------------------------

#[test]
fn cosignature_round_trip_and_format() {
    let log = signer("loyalty.example/brand-a");
    let w = cosigner("witness.example/w1");
    let note = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
    let sig = w.cosign(&note.text, 1_679_315_147).unwrap();
    assert_eq!(sig.signature.len(), 72);
    assert_eq!(sig.signature[..8], 1_679_315_147u64.to_be_bytes());
    // The signature is plain Ed25519 over the cosignature/v1 message.
    let msg = format!("cosignature/v1\ntime 1679315147\n{}", note.text);
    assert_eq!(cosignature_message(&note.text, 1_679_315_147), msg);
    let ed = Signature::from_slice(&sig.signature[8..]).unwrap();
    assert!(VerifyingKey::from_bytes(&w.public_key())
        .unwrap()
        .verify_strict(msg.as_bytes(), &ed)
        .is_ok());
    let wv = w.verifier();
    assert_eq!(wv.verify_cosignature(&note.text, &sig), Ok(1_679_315_147));
    assert_eq!(wv.verify(&note.text, &sig), Ok(()));
    // A cosignature survives the note text round trip.
    let line = sig.to_line();
    assert_eq!(
        NoteSignature::parse_line(line.trim_end_matches('\n')).unwrap(),
        sig
    );
    // A log key cannot verify cosignatures.
    assert_eq!(
        log.verifier().verify_cosignature(&note.text, &sig),
        Err(NoteError::WrongSignatureType {
            expected: SignatureType::CosignatureV1,
            got: SignatureType::Ed25519
        })
    );
    // Time limits and text rules.
    assert!(w.cosign(&note.text, MAX_COSIGNATURE_TIME).is_ok());
    assert_eq!(
        w.cosign(&note.text, MAX_COSIGNATURE_TIME + 1),
        Err(malformed("cosignature timestamp exceeds 2^63-1"))
    );
    assert_eq!(
        w.cosign("no newline", 1),
        Err(malformed("note text does not end with a newline"))
    );
    // An Ed25519 note signature by the same key is not a cosignature.
    let plain =
        NoteSigner::new(w.name(), SigningKey::from_bytes(&vectors::seed(w.name()))).unwrap();
    let mut s = plain.sign(&note.text);
    s.key_id = w.key_id();
    assert!(wv.verify_cosignature(&note.text, &s).is_err());
}

#[test]
fn cosignature_with_wrong_timestamp() {
    let log = signer("loyalty.example/brand-a");
    let w = cosigner("witness.example/w1");
    let note = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
    let sig = w.cosign(&note.text, 1000).unwrap();
    let bad = NoteError::BadSignature {
        name: w.name().into(),
        key_id: w.key_id(),
    };
    let mut wrong = sig.clone();
    wrong.signature[..8].copy_from_slice(&1001u64.to_be_bytes());
    assert_eq!(
        w.verifier().verify_cosignature(&note.text, &wrong),
        Err(bad.clone())
    );
    // Timestamp above 2^63-1 is rejected before verification.
    let mut huge = sig.clone();
    huge.signature[..8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        w.verifier().verify_cosignature(&note.text, &huge),
        Err(bad.clone())
    );
    // Through the policy check too.
    let mut n = note.clone();
    n.signatures.push(wrong);
    let policy = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![w.verifier()],
        quorum: 1,
    };
    assert_eq!(
        verify_cosigned_checkpoint(&n.to_string(), &policy),
        Err(bad.into())
    );
    // Cosignature over another checkpoint.
    let other = Checkpoint {
        size: 11,
        ..sample_checkpoint(log.name())
    };
    let mut n = note.clone();
    n.signatures.push(w.cosign(&other.to_text(), 1000).unwrap());
    assert!(matches!(
        verify_cosigned_checkpoint(&n.to_string(), &policy),
        Err(CheckpointError::Note(NoteError::BadSignature { .. }))
    ));
}

#[test]
fn witness_quorum() {
    let log = signer("loyalty.example/brand-a");
    let w1 = cosigner("witness.example/w1");
    let w2 = cosigner("witness.example/w2");
    let w3 = cosigner("witness.example/w3");
    let stranger = cosigner("witness.example/stranger");
    let note = cosigned_note(&log, &[&w1, &stranger, &w2]);

    let two = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![w1.verifier(), w2.verifier()],
        quorum: 2,
    };
    let ok = verify_cosigned_checkpoint(&note, &two).unwrap();
    assert_eq!(ok.checkpoint, sample_checkpoint(log.name()));
    assert_eq!(
        ok.cosignatures,
        vec![
            WitnessCosignature {
                witness: w1.verifier(),
                timestamp: 1000
            },
            WitnessCosignature {
                witness: w2.verifier(),
                timestamp: 1002
            },
        ]
    );
    assert_eq!(ok.note.to_string(), note);

    let three = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![w1.verifier(), w2.verifier(), w3.verifier()],
        quorum: 3,
    };
    assert_eq!(
        verify_cosigned_checkpoint(&note, &three),
        Err(CheckpointError::QuorumNotMet { got: 2, need: 3 })
    );
    // Duplicated witnesses count once.
    let dup = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![w1.verifier(), w1.verifier()],
        quorum: 2,
    };
    assert_eq!(
        verify_cosigned_checkpoint(&note, &dup),
        Err(CheckpointError::QuorumNotMet { got: 1, need: 2 })
    );
    // Duplicated cosignature lines count once.
    let mut n = SignedNote::parse(&note).unwrap();
    let again = w1.cosign(&n.text, 5000).unwrap();
    n.signatures.push(again);
    let v = verify_cosigned_checkpoint(&n.to_string(), &dup);
    assert_eq!(v, Err(CheckpointError::QuorumNotMet { got: 1, need: 2 }));
    let one = WitnessPolicy { quorum: 1, ..dup };
    let v = verify_cosigned_checkpoint(&n.to_string(), &one).unwrap();
    assert_eq!(
        v.cosignatures,
        vec![WitnessCosignature {
            witness: w1.verifier(),
            timestamp: 5000
        }]
    );
    // Quorum 0 needs only the log signature.
    let none = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![],
        quorum: 0,
    };
    assert!(verify_cosigned_checkpoint(&note, &none)
        .unwrap()
        .cosignatures
        .is_empty());
    // A log key listed as a witness is a policy error.
    let wrong = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![log.verifier()],
        quorum: 1,
    };
    assert_eq!(
        verify_cosigned_checkpoint(&note, &wrong),
        Err(CheckpointError::InvalidPolicy {
            reason: "witness key is not a cosignature/v1 (0x04) key"
        })
    );
    // Without the log signature, cosignatures are worthless.
    let mut n = SignedNote::parse(&note).unwrap();
    n.signatures.remove(0);
    assert_eq!(
        verify_cosigned_checkpoint(&n.to_string(), &two),
        Err(CheckpointError::MissingLogSignature {
            origin: log.name().into()
        })
    );
}

#[test]
fn merge_cosignatures_from_several_witnesses() {
    let log = signer("loyalty.example/brand-a");
    let w1 = cosigner("witness.example/w1");
    let w2 = cosigner("witness.example/w2");
    let base = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
    let mut from_w1 = base.clone();
    from_w1
        .push_signature(w1.cosign(&base.text, 10).unwrap())
        .unwrap();
    let mut from_w2 = base.clone();
    from_w2
        .push_signature(w2.cosign(&base.text, 20).unwrap())
        .unwrap();
    let mut merged = from_w1.clone();
    assert_eq!(merged.add_signatures(&from_w2), Ok(1));
    let policy = WitnessPolicy {
        log: log.verifier(),
        witnesses: vec![w1.verifier(), w2.verifier()],
        quorum: 2,
    };
    let v = verify_cosigned_checkpoint(&merged.to_string(), &policy).unwrap();
    assert_eq!(v.cosignatures.len(), 2);
}

// ----- vectors -----------------------------------------------------------------

#[test]
fn vectors_are_deterministic_and_check() {
    let doc = vectors::generate();
    assert_eq!(doc, vectors::generate());
    vectors::check(&doc).unwrap();
    let cases = doc.as_array().unwrap();
    assert_eq!(cases[0]["size"], 0);
    assert_eq!(cases[0]["root_b64"], BASE64.encode(Sha256::digest(b"")));
    assert!(cases.iter().any(|c| c.get("cosigners").is_some()));
    let rendered = vectors::render();
    assert!(rendered.ends_with("}\n]\n"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rendered).unwrap(),
        doc
    );

    let path = std::env::var("CHECKPOINT_VECTORS_PATH").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../spec/vectors/checkpoint.json"
        )
        .to_owned()
    });
    if std::env::var("UPDATE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, &rendered).unwrap();
    } else if let Ok(existing) = std::fs::read_to_string(&path) {
        assert_eq!(
            existing, rendered,
            "{path} is stale; rerun with UPDATE_VECTORS=1"
        );
    }
}

#[test]
fn vector_check_detects_tampering() {
    let doc = vectors::generate();
    let mut d = doc.clone();
    d[0]["size"] = serde_json::json!(1);
    assert!(vectors::check(&d).unwrap_err().starts_with("case 0: size"));
    let mut d = doc.clone();
    d[1]["origin"] = serde_json::json!("x");
    assert!(vectors::check(&d).is_err());
    let mut d = doc.clone();
    d[2]["root_b64"] = serde_json::json!(BASE64.encode([0u8; 32]));
    assert!(vectors::check(&d).is_err());
    let mut d = doc.clone();
    d[3]["verifier_key"] =
        serde_json::json!(signer("loyalty.example/brand-b-x").verifier_key_string());
    assert!(vectors::check(&d).is_err());
    let i = doc
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c.get("cosigners").is_some())
        .unwrap();
    let mut d = doc.clone();
    d[i]["cosigners"] =
        serde_json::json!([cosigner("witness.example/other").verifier_key_string()]);
    assert!(vectors::check(&d).unwrap_err().contains("quorum"));
    assert!(vectors::check(&serde_json::json!({})).is_err());
    assert!(vectors::check(&serde_json::json!([])).is_err());
    assert!(vectors::check(&serde_json::json!([{}])).is_err());
}

// ----- properties --------------------------------------------------------------

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec("[ -~\u{e9}\u{2014}\u{1f600}]{0,24}", 1..5)
        .prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
}

proptest! {
    #[test]
    fn prop_note_round_trip(text in text_strategy(), nsig in 1usize..4, seed in any::<[u8; 32]>()) {
        let signers: Vec<NoteSigner> = (0..nsig)
            .map(|i| NoteSigner::from_seed(&format!("k{i}.example/x"), &seed).unwrap())
            .collect();
        let refs: Vec<&NoteSigner> = signers.iter().collect();
        let note = SignedNote::sign(&text, &refs).unwrap();
        let s = note.to_string();
        let parsed = SignedNote::parse(&s).unwrap();
        prop_assert_eq!(&parsed, &note);
        prop_assert_eq!(parsed.to_string(), s);
        let vs: Vec<NoteVerifier> = signers.iter().map(NoteSigner::verifier).collect();
        prop_assert_eq!(verify_note(&parsed, &vs).unwrap().len(), nsig);
    }

    #[test]
    fn prop_single_byte_mutation_fails(
        text in text_strategy(),
        seed in any::<[u8; 32]>(),
        idx in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let s = NoteSigner::from_seed("k.example/x", &seed).unwrap();
        let mut bytes = SignedNote::sign(&text, &[&s]).unwrap().to_string().into_bytes();
        let i = idx.index(bytes.len());
        bytes[i] = bytes[i].wrapping_add(delta);
        let result = SignedNote::parse_bytes(&bytes)
            .and_then(|n| verify_note(&n, &[s.verifier()]).map(|_| ()));
        prop_assert!(result.is_err());
    }

    #[test]
    fn prop_checkpoint_round_trip_and_mutation(
        origin in "[!-*,-~]{1,20}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        exts in prop::collection::vec("[ -~]{1,16}", 0..3),
        idx in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let cp = Checkpoint { origin: origin.clone(), size, root, extensions: exts };
        prop_assert_eq!(Checkpoint::parse_text(&cp.to_text()).unwrap(), cp.clone());
        let log = NoteSigner::from_seed(&origin, &root).unwrap();
        let w = CosignatureSigner::from_seed("w.example/w", &root).unwrap();
        let mut note = sign_checkpoint(&cp, &log).unwrap();
        note.push_signature(w.cosign(&note.text, size >> 1).unwrap()).unwrap();
        let s = note.to_string();
        let policy = WitnessPolicy { log: log.verifier(), witnesses: vec![w.verifier()], quorum: 1 };
        let v = verify_cosigned_checkpoint(&s, &policy).unwrap();
        prop_assert_eq!(&v.checkpoint, &cp);
        prop_assert_eq!(v.cosignatures[0].timestamp, size >> 1);
        let mut bytes = s.into_bytes();
        let i = idx.index(bytes.len());
        bytes[i] = bytes[i].wrapping_add(delta);
        if let Ok(m) = String::from_utf8(bytes) {
            prop_assert!(verify_cosigned_checkpoint(&m, &policy).is_err());
        }
    }
}
