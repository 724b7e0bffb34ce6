//! Signed notes, checkpoints, verifier keys and receipts (ledger/src/checkpoint.rs,
//! ledger/src/receipt.rs): everything a node or an auditor parses from a partner's or a node's
//! `/checkpoint`, witness requests and receipts.
//!
//! Invariants checked:
//! - no parser panics; opening and verifying never panic;
//! - a parsed signed note prints back to exactly its bytes; so do a parsed checkpoint text,
//!   verifier key and signature line;
//! - any checkpoint that parses, signed by the log key, opens to the same checkpoint, and with
//!   a witness's cosignature meets a quorum of one.
#![no_main]

use std::sync::OnceLock;

use ledger::checkpoint::{
    open_checkpoint, sign_checkpoint, validate_note_text, verify_note, Checkpoint,
    CosignatureSigner, NoteSignature, NoteSigner, NoteVerifier, SignedNote, MAX_SIGNATURES,
};
use ledger::checkpoint_vectors::seed;
use ledger::receipt::Receipt;
use ledger::witness::{verify_cosigned_checkpoint, WitnessPolicy};
use libfuzzer_sys::fuzz_target;

/// The keys of spec/vectors/checkpoint.json and entries.json, so the seed notes and receipts
/// verify and the fuzzer starts from the accepting paths.
struct Keys {
    log: NoteSigner,
    witness: CosignatureSigner,
    policy: WitnessPolicy,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let log_name = "loyalty.example/brand-a";
        let witness_name = "witness.example/w1";
        let log = NoteSigner::from_seed(log_name, &seed(log_name)).unwrap();
        let witness = CosignatureSigner::from_seed(witness_name, &seed(witness_name)).unwrap();
        let policy = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![witness.verifier()],
            quorum: 1,
        };
        Keys {
            log,
            witness,
            policy,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let verifiers = [k.policy.log.clone(), k.witness.verifier()];
    if let Ok(note) = SignedNote::parse_bytes(data) {
        assert_eq!(
            note.to_string().as_bytes(),
            data,
            "a note prints back to its bytes"
        );
        assert!((1..=MAX_SIGNATURES).contains(&note.signatures.len()));
        let _ = verify_note(&note, &verifiers);
        let mut same = note.clone();
        assert_eq!(
            same.add_signatures(&note)
                .expect("merging a note with itself"),
            0
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = validate_note_text(s);
        let _ = open_checkpoint(s, &k.policy.log);
        let _ = verify_cosigned_checkpoint(s, &k.policy);
        if let Ok(cp) = Checkpoint::parse_text(s) {
            assert_eq!(cp.to_text(), s, "a checkpoint prints back to its text");
            let ours = Checkpoint {
                origin: k.log.name().to_owned(),
                ..cp
            };
            // Fails only when the text is too large to be a note.
            if let Ok(mut note) = sign_checkpoint(&ours, &k.log) {
                let (opened, _) = open_checkpoint(&note.to_string(), &k.policy.log)
                    .expect("a signed checkpoint opens");
                assert_eq!(opened, ours);
                let cosig = k.witness.cosign(&note.text, 1_700_000_000).expect("cosign");
                if note.push_signature(cosig).is_ok() {
                    let v = verify_cosigned_checkpoint(&note.to_string(), &k.policy)
                        .expect("a cosigned checkpoint meets a quorum of one");
                    assert_eq!(v.cosignatures.len(), 1);
                    assert_eq!(v.cosignatures[0].timestamp, 1_700_000_000);
                }
            }
        }
        if let Ok(v) = NoteVerifier::parse(s) {
            assert_eq!(v.to_string(), s, "a verifier key prints back to its text");
        }
        if let Ok(sig) = NoteSignature::parse_line(s) {
            assert_eq!(sig.to_line(), format!("{s}\n"));
        }
    }
    if let Ok(receipt) = serde_json::from_slice::<Receipt>(data) {
        if let Ok(v) = receipt.verify(&k.policy.log) {
            assert_eq!(v.index, receipt.index);
            assert!(v.index < v.checkpoint.size);
        }
    }
});
