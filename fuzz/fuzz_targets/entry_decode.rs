//! The entry decoder (spec/protocol.md §2.2): `Entry::from_bytes` on arbitrary bytes.
//!
//! Invariants checked:
//! - decoding never panics;
//! - bytes that decode are exactly the canonical encoding of what they decode to, and that
//!   decodes to the same entry, which passes `validate`;
//! - `parse_canonical` accepts only its own re-encoding;
//! - an entry decoded from any JSON value (`Entry::from_value`, no canonical check) encodes to
//!   bytes that `from_bytes` decodes back to it, when they are within the size limit.
#![no_main]

use ledger::encoding::{parse_canonical, to_canonical};
use ledger::entry::{Entry, ENTRY_BYTES_MAX};
use ledger::merkle::leaf_hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Entry::from_bytes(data) {
        Ok(entry) => {
            let bytes = entry.to_bytes();
            assert_eq!(bytes, data, "accepted bytes are not the canonical encoding");
            let again = Entry::from_bytes(&bytes).expect("canonical bytes decode");
            assert_eq!(again, entry);
            entry.kind.validate().expect("a decoded entry is valid");
            assert_eq!(entry.kind.type_name(), again.kind.type_name());
            let _ = (
                entry.kind.member(),
                entry.kind.intent_digest(),
                leaf_hash(data),
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(v) = parse_canonical(data, ENTRY_BYTES_MAX) {
        assert_eq!(to_canonical(&v), data);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(entry) = Entry::from_value(v) {
            let bytes = entry.to_bytes();
            if bytes.len() <= ENTRY_BYTES_MAX {
                match Entry::from_bytes(&bytes) {
                    Ok(again) => assert_eq!(again, entry),
                    Err(e) => panic!(
                        "from_value accepted an entry whose bytes do not decode: {e}: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                }
            }
        }
    }
});
