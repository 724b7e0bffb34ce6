//! Idempotency ids for writes.
//!
//! Every write carries a client-chosen [`EntryId`]; retrying with the same id is what makes
//! retries safe. An app that has a natural id (an order number, a POS transaction id)
//! should use it; [`new_entry_id`] is for callers that have none. Generate the id once per
//! intended write and keep it across retries, never once per attempt.

use ledger::types::{EntryId, ParseError};
use rand_core::{OsRng, RngCore};

/// The prefix ids starting with which are reserved for entries the node writes itself.
pub const RESERVED_ID_PREFIX: &str = "sys.";

/// A fresh random id: `sdk-` followed by 128 random bits as 32 lowercase hex digits.
pub fn new_entry_id() -> EntryId {
    new_entry_id_with_prefix("sdk").expect("the default prefix is valid")
}

/// A fresh random id `<prefix>-<32 hex digits>` (128 random bits). Fails when the prefix
/// makes an invalid id (characters outside `A-Z a-z 0-9 - _ . :`, more than 95 bytes) or a
/// reserved one (`sys.`).
pub fn new_entry_id_with_prefix(prefix: &str) -> Result<EntryId, ParseError> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let id: EntryId = format!("{prefix}-{}", hex::encode(bytes)).parse()?;
    check_not_reserved(&id)?;
    Ok(id)
}

/// Refuses ids the node reserves for itself.
pub fn check_not_reserved(id: &EntryId) -> Result<(), ParseError> {
    if id.as_str().starts_with(RESERVED_ID_PREFIX) {
        return Err(ParseError {
            what: "entry id",
            reason: format!("ids starting with {RESERVED_ID_PREFIX:?} are reserved for the node"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_distinct_and_prefixed() {
        let a = new_entry_id();
        let b = new_entry_id();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("sdk-"));
        assert_eq!(a.as_str().len(), 4 + 32);
        let c = new_entry_id_with_prefix("pos-17").unwrap();
        assert!(c.as_str().starts_with("pos-17-"));
    }

    #[test]
    fn reserved_and_invalid_prefixes_are_refused() {
        assert!(new_entry_id_with_prefix("sys.").is_err());
        assert!(new_entry_id_with_prefix("sys").is_ok());
        assert!(new_entry_id_with_prefix("a b").is_err());
        assert!(new_entry_id_with_prefix(&"x".repeat(96)).is_err());
    }
}
