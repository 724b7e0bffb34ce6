//! Tier attestations (spec/federation.md §6): a brand's statement "member M holds tier T until
//! U", proven by a receipt for a `tier_attestation` entry (spec/protocol.md §3.3) under a
//! checkpoint cosigned by the brand's witnesses.
//!
//! Invariant: [`verify`] returns a [`VerifiedAttestation`] only if every check of §6 passed:
//! the statement names the brand the caller expects; the receipt's checkpoint is signed by
//! that brand's pinned log key and cosigned by a quorum of the caller's witnesses; the
//! inclusion proof places the entry under it; the entry is a canonical `tier_attestation`
//! whose member, tier and valid-until equal the statement's; and, when the caller gives the
//! time, `valid_until` has not passed. Like the rest of this crate it reads no clock: the
//! caller passes `now`.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError, NoteError, NoteVerifier, SignatureType};
use crate::entry::EntryKind;
use crate::receipt::{Receipt, ReceiptError};
use crate::types::{BrandId, LogTime, MemberId, TierName};
use crate::witness::{verify_cosigned_checkpoint, WitnessCosignature, WitnessPolicy};

/// What a brand states about one of its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The brand whose log holds the attestation.
    pub brand: BrandId,
    /// The member, by the brand's pseudonymous id.
    pub member: MemberId,
    /// The tier the member holds.
    pub tier: TierName,
    /// Until when the member keeps the tier without earning more; omitted for the base tier,
    /// which is held forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<LogTime>,
}

/// A statement with its proof: the receipt of the `tier_attestation` entry, whose checkpoint
/// carries the witnesses' cosignatures. This is the body of
/// `GET /v1/members/{member}/attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub statement: Statement,
    pub receipt: Receipt,
}

/// An attestation that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttestation {
    /// The statement, now proven.
    pub statement: Statement,
    /// The index of the `tier_attestation` entry in the brand's log.
    pub index: u64,
    /// The entry's log time: when the brand made the statement.
    pub time: LogTime,
    /// The checkpoint the entry is proven under.
    pub checkpoint: Checkpoint,
    /// The policy's witnesses that cosigned the checkpoint, in policy order.
    pub cosignatures: Vec<WitnessCosignature>,
}

impl VerifiedAttestation {
    /// The key names of the witnesses that cosigned.
    pub fn cosigners(&self) -> Vec<String> {
        self.cosignatures
            .iter()
            .map(|c| c.witness.name().to_owned())
            .collect()
    }
}

/// Why an attestation does not verify. Each variant has a stable [`AttestationError::code`].
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// The statement is about another brand than the one whose keys the caller gave.
    #[error("the statement is by brand {got}, not {expected}")]
    WrongBrand { expected: BrandId, got: BrandId },
    /// The receipt does not verify against the brand's log key: the checkpoint is not signed
    /// by it (or has another origin), the entry is not canonical, or the inclusion proof
    /// does not place the entry under the checkpoint.
    #[error("the receipt does not verify: {0}")]
    BadReceipt(#[from] ReceiptError),
    /// The witness policy is unusable (a witness key that is not a `0x04` key).
    #[error("invalid witness policy: {0}")]
    InvalidPolicy(CheckpointError),
    /// A cosignature line claims a policy witness but does not verify.
    #[error("a witness cosignature does not verify: {0}")]
    BadCosignature(CheckpointError),
    /// Fewer distinct policy witnesses cosigned the checkpoint than the quorum.
    #[error("witness quorum not met: {got} of {need} cosignatures")]
    Quorum { got: usize, need: usize },
    /// The receipt proves an entry of another type.
    #[error("the receipt's entry is a {type_name} entry, not a tier_attestation")]
    NotAttestation { type_name: &'static str },
    /// The entry states something else than the statement.
    #[error("the statement's {field} differs from the logged attestation's")]
    Mismatch {
        /// `member`, `tier` or `valid_until`.
        field: &'static str,
    },
    /// The statement's `valid_until` is not after `now`.
    #[error("the attestation expired at {valid_until} (now {now})")]
    Expired { valid_until: LogTime, now: LogTime },
}

impl AttestationError {
    /// A stable machine-readable code (used by the HTTP API and the CLI).
    pub fn code(&self) -> &'static str {
        match self {
            AttestationError::WrongBrand { .. } => "attestation_wrong_brand",
            AttestationError::BadReceipt(_) => "attestation_bad_receipt",
            AttestationError::InvalidPolicy(_) => "attestation_invalid_policy",
            AttestationError::BadCosignature(_) => "attestation_bad_cosignature",
            AttestationError::Quorum { .. } => "attestation_quorum",
            AttestationError::NotAttestation { .. } => "attestation_not_attestation",
            AttestationError::Mismatch { .. } => "attestation_mismatch",
            AttestationError::Expired { .. } => "attestation_expired",
        }
    }
}

/// Verifies an attestation of `expected_brand`, whose log key and witnesses are `policy`
/// (spec/federation.md §6). With `now`, an attestation whose `valid_until` is not after
/// `now` is [`AttestationError::Expired`]; a base-tier statement (no `valid_until`) never
/// expires. Checks run in this order: brand, receipt (log signature, entry, inclusion),
/// cosignatures and quorum, entry type, statement fields, expiry.
pub fn verify(
    att: &Attestation,
    expected_brand: &BrandId,
    policy: &WitnessPolicy,
    now: Option<LogTime>,
) -> Result<VerifiedAttestation, AttestationError> {
    let s = &att.statement;
    if &s.brand != expected_brand {
        return Err(AttestationError::WrongBrand {
            expected: expected_brand.clone(),
            got: s.brand.clone(),
        });
    }
    let receipt = att.receipt.verify(&policy.log)?;
    let cosigned =
        verify_cosigned_checkpoint(&att.receipt.checkpoint, policy).map_err(|e| match e {
            CheckpointError::QuorumNotMet { got, need } => AttestationError::Quorum { got, need },
            e @ CheckpointError::InvalidPolicy { .. } => AttestationError::InvalidPolicy(e),
            e => AttestationError::BadCosignature(e),
        })?;
    // Both opened the same note with the same key; they agree unless the code is wrong.
    debug_assert_eq!(cosigned.checkpoint, receipt.checkpoint);
    let EntryKind::TierAttestation(logged) = &receipt.entry.kind else {
        return Err(AttestationError::NotAttestation {
            type_name: receipt.entry.kind.type_name(),
        });
    };
    if logged.member != s.member {
        return Err(AttestationError::Mismatch { field: "member" });
    }
    if logged.tier != s.tier {
        return Err(AttestationError::Mismatch { field: "tier" });
    }
    if logged.valid_until != s.valid_until {
        return Err(AttestationError::Mismatch {
            field: "valid_until",
        });
    }
    if let (Some(valid_until), Some(now)) = (s.valid_until, now) {
        if valid_until <= now {
            return Err(AttestationError::Expired { valid_until, now });
        }
    }
    Ok(VerifiedAttestation {
        statement: s.clone(),
        index: receipt.index,
        time: receipt.entry.time,
        checkpoint: receipt.checkpoint,
        cosignatures: cosigned.cosignatures,
    })
}

/// The witness (`cosignature/v1`, type `0x04`) key of a node, from its pinned log key
/// (spec/federation.md §1): same name and public key. A `0x04` key is returned unchanged.
pub fn witness_key_from_log_key(key: &NoteVerifier) -> Result<NoteVerifier, NoteError> {
    match key.signature_type() {
        SignatureType::CosignatureV1 => Ok(key.clone()),
        SignatureType::Ed25519 => NoteVerifier::from_public_key(
            key.name(),
            SignatureType::CosignatureV1,
            &key.public_key(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{sign_checkpoint, CosignatureSigner, NoteSigner, SignedNote};
    use crate::entry::{Earn, Entry, TierAttestation};
    use crate::merkle::MemoryTree;
    use crate::types::Points;

    const ORIGIN: &str = "loyalty.example/brand-a";

    fn log_signer() -> NoteSigner {
        NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap()
    }

    fn witness(n: u8) -> CosignatureSigner {
        CosignatureSigner::from_seed(&format!("loyalty.example/witness-{n}"), &[10 + n; 32])
            .unwrap()
    }

    fn brand() -> BrandId {
        "brand-a".parse().unwrap()
    }

    fn at(ms: u64) -> LogTime {
        LogTime::new(ms).unwrap()
    }

    fn policy(witnesses: &[u8], quorum: usize) -> WitnessPolicy {
        WitnessPolicy {
            log: log_signer().verifier(),
            witnesses: witnesses.iter().map(|n| witness(*n).verifier()).collect(),
            quorum,
        }
    }

    /// A log of an earn and an attestation (index 1), cosigned by witnesses 1 and 2.
    fn fixture(valid_until: Option<u64>) -> (Attestation, MemoryTree) {
        let member: MemberId = "m-1".parse().unwrap();
        let entries = [
            Entry {
                time: at(1_000),
                id: "e-1".parse().unwrap(),
                kind: EntryKind::Earn(Earn {
                    member: member.clone(),
                    points: Points::new(5_000).unwrap(),
                    qualifying: true,
                }),
            },
            Entry {
                time: at(2_000),
                id: "sys.attest.m-1.gold".parse().unwrap(),
                kind: EntryKind::TierAttestation(TierAttestation {
                    member: member.clone(),
                    tier: "gold".parse().unwrap(),
                    valid_until: valid_until.map(at),
                }),
            },
            Entry {
                time: at(3_000),
                id: "e-2".parse().unwrap(),
                kind: EntryKind::Earn(Earn {
                    member: member.clone(),
                    points: Points::new(1).unwrap(),
                    qualifying: true,
                }),
            },
        ];
        let mut tree = MemoryTree::new();
        for e in &entries {
            tree.push(&e.to_bytes()).unwrap();
        }
        let att = Attestation {
            statement: Statement {
                brand: brand(),
                member,
                tier: "gold".parse().unwrap(),
                valid_until: valid_until.map(at),
            },
            receipt: receipt_of(&tree, &entries[1], 1, &[1, 2]),
        };
        (att, tree)
    }

    fn receipt_of(tree: &MemoryTree, entry: &Entry, index: u64, cosigners: &[u8]) -> Receipt {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: tree.size(),
            root: tree.root().unwrap(),
            extensions: vec![],
        };
        let mut note = sign_checkpoint(&cp, &log_signer()).unwrap();
        for n in cosigners {
            let sig = witness(*n).cosign(&note.text, 1_700_000_000).unwrap();
            note.push_signature(sig).unwrap();
        }
        Receipt {
            index,
            entry: String::from_utf8(entry.to_bytes()).unwrap(),
            inclusion_proof: tree
                .inclusion_proof(index, tree.size())
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            checkpoint: note.to_string(),
        }
    }

    #[test]
    fn a_cosigned_attestation_verifies() {
        let (att, _) = fixture(Some(9_000));
        let v = verify(&att, &brand(), &policy(&[1, 2], 2), Some(at(8_999))).unwrap();
        assert_eq!(v.statement, att.statement);
        assert_eq!((v.index, v.time, v.checkpoint.size), (1, at(2_000), 3));
        assert_eq!(
            v.cosigners(),
            vec!["loyalty.example/witness-1", "loyalty.example/witness-2"]
        );
        // Without a time nothing expires; with no witnesses required only the log key counts.
        verify(&att, &brand(), &policy(&[], 0), None).unwrap();
        verify(&att, &brand(), &policy(&[1, 2, 3], 2), None).unwrap();
    }

    #[test]
    fn quorum_counts_distinct_policy_witnesses() {
        let (att, _) = fixture(Some(9_000));
        let e = verify(&att, &brand(), &policy(&[1, 2, 3], 3), None).unwrap_err();
        assert!(
            matches!(e, AttestationError::Quorum { got: 2, need: 3 }),
            "{e}"
        );
        assert_eq!(e.code(), "attestation_quorum");
        // The same witness twice counts once.
        let e = verify(&att, &brand(), &policy(&[1, 1], 2), None).unwrap_err();
        assert!(
            matches!(e, AttestationError::Quorum { got: 1, need: 2 }),
            "{e}"
        );
        // A log key given as a witness is refused as a policy error.
        let mut p = policy(&[1], 1);
        p.witnesses.push(log_signer().verifier());
        let e = verify(&att, &brand(), &p, None).unwrap_err();
        assert_eq!(e.code(), "attestation_invalid_policy");
    }

    #[test]
    fn a_tampered_statement_does_not_verify() {
        let (att, _) = fixture(Some(9_000));
        let p = policy(&[1, 2], 2);
        let mut t = att.clone();
        t.statement.tier = "platinum".parse().unwrap();
        let e = verify(&t, &brand(), &p, None).unwrap_err();
        assert!(
            matches!(e, AttestationError::Mismatch { field: "tier" }),
            "{e}"
        );
        let mut t = att.clone();
        t.statement.valid_until = Some(at(9_001));
        let e = verify(&t, &brand(), &p, None).unwrap_err();
        assert_eq!(e.code(), "attestation_mismatch");
        let mut t = att.clone();
        t.statement.valid_until = None;
        assert_eq!(
            verify(&t, &brand(), &p, None).unwrap_err().code(),
            "attestation_mismatch"
        );
        let mut t = att.clone();
        t.statement.member = "m-2".parse().unwrap();
        assert_eq!(
            verify(&t, &brand(), &p, None).unwrap_err().code(),
            "attestation_mismatch"
        );
        let mut t = att;
        t.statement.brand = "brand-b".parse().unwrap();
        assert_eq!(
            verify(&t, &brand(), &p, None).unwrap_err().code(),
            "attestation_wrong_brand"
        );
    }

    #[test]
    fn a_tampered_receipt_does_not_verify() {
        let (att, _) = fixture(Some(9_000));
        let p = policy(&[1, 2], 2);
        // The entry's bytes, with the statement changed to match.
        let mut t = att.clone();
        t.receipt.entry = t.receipt.entry.replace("9000", "9999");
        t.statement.valid_until = Some(at(9_999));
        let e = verify(&t, &brand(), &p, None).unwrap_err();
        assert!(matches!(e, AttestationError::BadReceipt(_)), "{e}");
        // One proof hash.
        let mut t = att.clone();
        let h = &mut t.receipt.inclusion_proof[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
        assert_eq!(
            verify(&t, &brand(), &p, None).unwrap_err().code(),
            "attestation_bad_receipt"
        );
        // The checkpoint: another size under the same signatures.
        let mut t = att.clone();
        t.receipt.checkpoint =
            t.receipt
                .checkpoint
                .replacen(&format!("{ORIGIN}\n3\n"), &format!("{ORIGIN}\n4\n"), 1);
        assert_ne!(t.receipt.checkpoint, att.receipt.checkpoint);
        assert_eq!(
            verify(&t, &brand(), &p, None).unwrap_err().code(),
            "attestation_bad_receipt"
        );
        // Signed by another log key.
        let other = WitnessPolicy {
            log: NoteSigner::from_seed(ORIGIN, &[2; 32]).unwrap().verifier(),
            ..p.clone()
        };
        assert_eq!(
            verify(&att, &brand(), &other, None).unwrap_err().code(),
            "attestation_bad_receipt"
        );
    }

    #[test]
    fn a_tampered_cosignature_does_not_verify() {
        let (att, _) = fixture(Some(9_000));
        let mut note = SignedNote::parse(&att.receipt.checkpoint).unwrap();
        let w2 = witness(2);
        let sig = note
            .signatures
            .iter_mut()
            .find(|s| s.name == w2.name())
            .unwrap();
        let last = sig.signature.len() - 1;
        sig.signature[last] ^= 1;
        let mut t = att.clone();
        t.receipt.checkpoint = note.to_string();
        let e = verify(&t, &brand(), &policy(&[1, 2], 2), None).unwrap_err();
        assert!(matches!(e, AttestationError::BadCosignature(_)), "{e}");
        assert_eq!(e.code(), "attestation_bad_cosignature");
        // A witness outside the policy is ignored, so its bad line does not matter.
        verify(&t, &brand(), &policy(&[1], 1), None).unwrap();
    }

    #[test]
    fn a_receipt_of_another_entry_type_is_not_an_attestation() {
        let (mut att, tree) = fixture(Some(9_000));
        let earn = Entry {
            time: at(1_000),
            id: "e-1".parse().unwrap(),
            kind: EntryKind::Earn(Earn {
                member: "m-1".parse().unwrap(),
                points: Points::new(5_000).unwrap(),
                qualifying: true,
            }),
        };
        att.receipt = receipt_of(&tree, &earn, 0, &[1, 2]);
        let e = verify(&att, &brand(), &policy(&[1, 2], 2), None).unwrap_err();
        assert!(
            matches!(e, AttestationError::NotAttestation { type_name: "earn" }),
            "{e}"
        );
    }

    #[test]
    fn an_attestation_expires_at_valid_until() {
        let (att, _) = fixture(Some(9_000));
        let p = policy(&[1, 2], 2);
        verify(&att, &brand(), &p, Some(at(8_999))).unwrap();
        let e = verify(&att, &brand(), &p, Some(at(9_000))).unwrap_err();
        assert_eq!(e.code(), "attestation_expired");
        // A base-tier statement (no end) never expires.
        let (forever, _) = fixture(None);
        verify(&forever, &brand(), &p, Some(at(u64::pow(2, 53) - 1))).unwrap();
    }

    #[test]
    fn the_json_shape_is_that_of_the_federation_spec() {
        let (att, _) = fixture(Some(9_000));
        let v = serde_json::to_value(&att).unwrap();
        assert_eq!(
            v["statement"],
            serde_json::json!({"brand":"brand-a","member":"m-1","tier":"gold","valid_until":9000})
        );
        let keys: Vec<&String> = v["receipt"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["checkpoint", "entry", "inclusion_proof", "index"]);
        let back: Attestation = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, att);
        let mut extra = v;
        extra["statement"]["note"] = "x".into();
        assert!(serde_json::from_value::<Attestation>(extra).is_err());
        let (forever, _) = fixture(None);
        let v = serde_json::to_value(&forever).unwrap();
        assert!(v["statement"].get("valid_until").is_none());
    }

    #[test]
    fn the_witness_key_is_derived_from_the_log_key() {
        let seed = [3; 32];
        let log = NoteSigner::from_seed("loyalty.example/brand-b", &seed).unwrap();
        let cosigner = CosignatureSigner::from_seed("loyalty.example/brand-b", &seed).unwrap();
        let derived = witness_key_from_log_key(&log.verifier()).unwrap();
        assert_eq!(derived, cosigner.verifier());
        assert_eq!(derived.signature_type(), SignatureType::CosignatureV1);
        assert_eq!(witness_key_from_log_key(&derived).unwrap(), derived);
    }
}
