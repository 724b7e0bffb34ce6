//! Agreements between two brands (DESIGN §6, spec/redemption.md §2): the terms under which one
//! brand's points are redeemed at the other, co-signed by both brands' node keys.
//!
//! Invariants: [`AgreementTerms::validate`] accepts only terms whose every amount is within
//! the ledger's integer bounds and whose directions name the two brands; a
//! [`SignedAgreement`] verifies only with exactly one valid signature per brand, each over the
//! domain-separated canonical terms ([`signing_message`]), by the key the caller pins for that
//! brand. Like the rest of this crate it does no I/O and reads no clock.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{NoteVerifier, SignatureType};
use crate::encoding::to_canonical;
use crate::money::Currency;
use crate::types::{BrandId, DurationMs, EntryId, LogTime, MAX_AMOUNT};
use crate::value::{Rounding, FEE_BPS_MAX};

/// The first line of every signed agreement message; no other signed message starts with it.
pub const AGREEMENT_DOMAIN: &str = "loyalty-agreement/v1";

/// Who pays whom: points of `payer` (the member's brand) are redeemed at `payee`, and `payer`
/// owes `payee` the fiat value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub payer: BrandId,
    pub payee: BrandId,
}

/// The terms both brands sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementTerms {
    /// The agreement's id; changing terms means a new id.
    pub agreement: EntryId,
    /// The two brands, proposer first.
    pub brands: [BrandId; 2],
    /// One or both directions.
    pub directions: Vec<Direction>,
    /// The currency obligations are recorded and settled in.
    pub settlement_currency: Currency,
    /// The brand whose `fx_rate` entries convert a base currency into the settlement currency.
    pub fx_source: BrandId,
    /// Fee the payee keeps, in basis points of the value (0 to 10 000).
    pub fee_bps: u16,
    /// The most a payer may owe the payee at once, in minor units of the settlement currency.
    pub credit_limit_minor: u64,
    /// Length of a settlement period.
    pub period_ms: DurationMs,
    /// Log time at which the first period starts.
    pub period_origin: LogTime,
    /// How each obligation is rounded, once.
    pub rounding: Rounding,
    /// From when the agreement applies (log time of the payer's entries).
    pub valid_from: LogTime,
}

/// Why terms or signatures are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    #[error("invalid terms: {0}")]
    InvalidTerms(&'static str),
    #[error("no signature by {0}")]
    MissingSignature(BrandId),
    #[error("more than one signature by {0}")]
    DuplicateSignature(BrandId),
    #[error("a signature by {0}, which is not a party")]
    NotAParty(BrandId),
    #[error("the signature by {0} does not verify")]
    BadSignature(BrandId),
    #[error("the key of {0} is not the pinned one")]
    UnpinnedKey(BrandId),
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
}

impl AgreementError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AgreementError::InvalidTerms(_) => "agreement_invalid_terms",
            AgreementError::MissingSignature(_) => "agreement_missing_signature",
            AgreementError::DuplicateSignature(_) => "agreement_duplicate_signature",
            AgreementError::NotAParty(_) => "agreement_not_a_party",
            AgreementError::BadSignature(_) => "agreement_bad_signature",
            AgreementError::UnpinnedKey(_) => "agreement_unpinned_key",
            AgreementError::Malformed(_) => "agreement_malformed_signature",
        }
    }
}

impl AgreementTerms {
    /// Checks the terms on their own.
    pub fn validate(&self) -> Result<(), AgreementError> {
        let bad = |m| Err(AgreementError::InvalidTerms(m));
        if self.brands[0] == self.brands[1] {
            return bad("the two brands must differ");
        }
        if self.directions.is_empty() || self.directions.len() > 2 {
            return bad("one or two directions");
        }
        for d in &self.directions {
            if d.payer == d.payee || !self.is_party(&d.payer) || !self.is_party(&d.payee) {
                return bad("a direction must go from one brand of the agreement to the other");
            }
        }
        if self.directions.len() == 2 && self.directions[0] == self.directions[1] {
            return bad("the two directions must differ");
        }
        if !self.is_party(&self.fx_source) {
            return bad("fx_source must be one of the two brands");
        }
        if self.fee_bps > FEE_BPS_MAX {
            return bad("fee_bps must be 0 to 10000");
        }
        if self.credit_limit_minor == 0 || self.credit_limit_minor > MAX_AMOUNT {
            return bad("credit_limit_minor must be 1 to 2^53-1");
        }
        if self.period_ms.get() == 0 {
            return bad("period_ms must be positive");
        }
        Ok(())
    }

    /// Whether `brand` is one of the two parties.
    pub fn is_party(&self, brand: &BrandId) -> bool {
        self.brands.contains(brand)
    }

    /// Whether points of `payer` may be redeemed at `payee` under these terms.
    pub fn allows(&self, payer: &BrandId, payee: &BrandId) -> bool {
        self.directions
            .iter()
            .any(|d| &d.payer == payer && &d.payee == payee)
    }

    /// The index of the settlement period that contains log time `t` (`None` before the
    /// origin).
    pub fn period_of(&self, t: LogTime) -> Option<u64> {
        t.get()
            .checked_sub(self.period_origin.get())
            .map(|d| d / self.period_ms.get())
    }
}

/// The exact bytes a brand signs: the domain line, then the canonical terms.
pub fn signing_message(terms: &AgreementTerms) -> Vec<u8> {
    let mut m = format!("{AGREEMENT_DOMAIN}\n").into_bytes();
    m.extend_from_slice(&to_canonical(terms));
    m
}

/// One brand's signature over the terms, with the verifier key it verifies against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementSignature {
    pub brand: BrandId,
    /// The brand's C2SP verifier key (its node key, type `0x01`).
    pub verifier_key: String,
    /// Base64 of the 64-byte Ed25519 signature over [`signing_message`].
    pub signature: String,
}

/// Terms and the parties' signatures: what both brands log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAgreement {
    pub terms: AgreementTerms,
    pub signatures: Vec<AgreementSignature>,
}

/// Signs `terms` for `brand` with its node key (whose verifier key string is `verifier_key`).
pub fn sign(
    terms: &AgreementTerms,
    brand: &BrandId,
    key: &SigningKey,
    verifier_key: &str,
) -> AgreementSignature {
    sign_message(&signing_message(terms), brand, key, verifier_key)
}

/// `brand`'s signature over `message` (a domain-separated message: an agreement's or a
/// statement's).
pub(crate) fn sign_message(
    message: &[u8],
    brand: &BrandId,
    key: &SigningKey,
    verifier_key: &str,
) -> AgreementSignature {
    AgreementSignature {
        brand: brand.clone(),
        verifier_key: verifier_key.to_owned(),
        signature: base64::engine::general_purpose::STANDARD.encode(key.sign(message).to_bytes()),
    }
}

fn verify_one(terms: &AgreementTerms, s: &AgreementSignature) -> Result<(), AgreementError> {
    verify_message(&signing_message(terms), s)
}

/// Checks `s` over `message` with the key it names.
pub(crate) fn verify_message(message: &[u8], s: &AgreementSignature) -> Result<(), AgreementError> {
    let key = NoteVerifier::parse(&s.verifier_key)
        .map_err(|_| AgreementError::Malformed("verifier_key is not a C2SP verifier key"))?;
    if key.signature_type() != SignatureType::Ed25519 {
        return Err(AgreementError::Malformed(
            "verifier_key is not an Ed25519 note key",
        ));
    }
    let bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(&s.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(AgreementError::Malformed(
            "signature is not 64 bytes of base64",
        ))?;
    let vk = VerifyingKey::from_bytes(&key.public_key())
        .map_err(|_| AgreementError::Malformed("not an Ed25519 public key"))?;
    vk.verify_strict(message, &Signature::from_bytes(&bytes))
        .map_err(|_| AgreementError::BadSignature(s.brand.clone()))
}

impl SignedAgreement {
    /// Checks the terms and that each party signed exactly once, validly, with the key it names
    /// (what a replay of the log can check on its own).
    pub fn verify_self_consistent(&self) -> Result<(), AgreementError> {
        self.terms.validate()?;
        for s in &self.signatures {
            if !self.terms.is_party(&s.brand) {
                return Err(AgreementError::NotAParty(s.brand.clone()));
            }
        }
        for brand in &self.terms.brands {
            let mine: Vec<&AgreementSignature> = self
                .signatures
                .iter()
                .filter(|s| &s.brand == brand)
                .collect();
            match mine.as_slice() {
                [] => return Err(AgreementError::MissingSignature(brand.clone())),
                [s] => verify_one(&self.terms, s)?,
                _ => return Err(AgreementError::DuplicateSignature(brand.clone())),
            }
        }
        Ok(())
    }

    /// As [`SignedAgreement::verify_self_consistent`], and each brand's key is the one `pinned`
    /// returns for it (a node checks this before logging an agreement).
    pub fn verify(
        &self,
        pinned: impl Fn(&BrandId) -> Option<NoteVerifier>,
    ) -> Result<(), AgreementError> {
        self.verify_self_consistent()?;
        for s in &self.signatures {
            let named = NoteVerifier::parse(&s.verifier_key).map_err(|_| {
                AgreementError::Malformed("verifier_key is not a C2SP verifier key")
            })?;
            match pinned(&s.brand) {
                Some(p) if p == named => {}
                _ => return Err(AgreementError::UnpinnedKey(s.brand.clone())),
            }
        }
        Ok(())
    }

    /// The signature of `brand` verifies (for a proposer's half-signed agreement).
    pub fn verify_signature_of(&self, brand: &BrandId) -> Result<(), AgreementError> {
        let s = self
            .signatures
            .iter()
            .find(|s| &s.brand == brand)
            .ok_or_else(|| AgreementError::MissingSignature(brand.clone()))?;
        verify_one(&self.terms, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;

    fn brand(s: &str) -> BrandId {
        s.parse().unwrap()
    }

    fn terms() -> AgreementTerms {
        AgreementTerms {
            agreement: "agr-1".parse().unwrap(),
            brands: [brand("air"), brand("coffee")],
            directions: vec![Direction {
                payer: brand("air"),
                payee: brand("coffee"),
            }],
            settlement_currency: "EUR".parse().unwrap(),
            fx_source: brand("air"),
            fee_bps: 150,
            credit_limit_minor: 1_000_000,
            period_ms: DurationMs::new(86_400_000).unwrap(),
            period_origin: LogTime::new(0).unwrap(),
            rounding: Rounding::HalfEven,
            valid_from: LogTime::new(1_000).unwrap(),
        }
    }

    fn party(name: &str, seed: u8) -> (BrandId, SigningKey, NoteVerifier) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let signer = NoteSigner::new(&format!("loyalty.example/{name}"), key.clone()).unwrap();
        (brand(name), key, signer.verifier())
    }

    fn signed() -> (SignedAgreement, Vec<(BrandId, NoteVerifier)>) {
        let t = terms();
        let (a, ka, va) = party("air", 1);
        let (c, kc, vc) = party("coffee", 2);
        let sa = sign(&t, &a, &ka, &va.to_string());
        let sc = sign(&t, &c, &kc, &vc.to_string());
        (
            SignedAgreement {
                terms: t,
                signatures: vec![sa, sc],
            },
            vec![(a, va), (c, vc)],
        )
    }

    #[test]
    fn cosigned_terms_verify_against_pinned_keys() {
        let (s, keys) = signed();
        s.verify(|b| keys.iter().find(|(k, _)| k == b).map(|(_, v)| v.clone()))
            .unwrap();
        assert!(s.terms.allows(&brand("air"), &brand("coffee")));
        assert!(!s.terms.allows(&brand("coffee"), &brand("air")));
        assert_eq!(
            s.terms.period_of(LogTime::new(86_400_001).unwrap()),
            Some(1)
        );
        // The JSON round-trips exactly (it is logged on both sides).
        let bytes = to_canonical(&s);
        let back: SignedAgreement = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn tampering_missing_duplicate_and_foreign_signatures_are_refused() {
        let (s, keys) = signed();
        let pinned = |b: &BrandId| keys.iter().find(|(k, _)| k == b).map(|(_, v)| v.clone());
        let mut t = s.clone();
        t.terms.fee_bps = 0;
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_bad_signature"
        );
        let mut t = s.clone();
        t.signatures.pop();
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_missing_signature"
        );
        let mut t = s.clone();
        t.signatures.push(t.signatures[0].clone());
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_duplicate_signature"
        );
        let (g, kg, vg) = party("gym", 3);
        let mut t = s.clone();
        t.signatures.push(sign(&t.terms, &g, &kg, &vg.to_string()));
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_not_a_party"
        );
        // A valid signature by a key that is not the pinned one.
        let (_, k_other, v_other) = party("air", 9);
        let mut t = s.clone();
        t.signatures[0] = sign(&t.terms, &brand("air"), &k_other, &v_other.to_string());
        t.verify_self_consistent().unwrap();
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_unpinned_key"
        );
        let mut t = s.clone();
        t.signatures[1].signature = "AAAA".into();
        assert_eq!(
            t.verify(pinned).unwrap_err().code(),
            "agreement_malformed_signature"
        );
    }

    #[test]
    fn invalid_terms_are_refused() {
        type Change = Box<dyn Fn(&mut AgreementTerms)>;
        let cases: Vec<Change> = vec![
            Box::new(|t| t.brands[1] = t.brands[0].clone()),
            Box::new(|t| t.directions.clear()),
            Box::new(|t| {
                t.directions[0].payee = brand("gym");
            }),
            Box::new(|t| t.directions.push(t.directions[0].clone())),
            Box::new(|t| t.fx_source = brand("gym")),
            Box::new(|t| t.fee_bps = 10_001),
            Box::new(|t| t.credit_limit_minor = 0),
            Box::new(|t| t.credit_limit_minor = MAX_AMOUNT + 1),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut t = terms();
            f(&mut t);
            assert_eq!(
                t.validate().unwrap_err().code(),
                "agreement_invalid_terms",
                "case {i}"
            );
        }
        terms().validate().unwrap();
    }

    #[test]
    fn the_signed_message_is_domain_separated() {
        let m = signing_message(&terms());
        assert!(m.starts_with(b"loyalty-agreement/v1\n{"));
    }
}
