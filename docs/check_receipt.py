#!/usr/bin/env python3
"""Checks a loyalty ledger receipt by hand, with nothing but the Python standard library for
the Merkle part and the `cryptography` package (pip install cryptography) for the signature.

    python3 docs/check_receipt.py RECEIPT.json 'VERIFIER_KEY'

RECEIPT.json is a receipt as the node returns it ({index, entry, inclusion_proof, checkpoint});
VERIFIER_KEY is the brand's C2SP verifier key, pinned out of band (name+keyhash+base64).
Every step follows spec/merkle.md, spec/checkpoint.md and RFC 6962; see docs/auditor-guide.md.
"""
import base64
import hashlib
import json
import sys


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list) -> bytes:
    """RFC 9162 §2.1.3.2: the root that `proof` gives for `leaf` at `index` of `size`."""
    if index >= size:
        raise ValueError("index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def parse_verifier(key: str):
    name, keyhash, b64 = key.split("+", 2)
    raw = base64.b64decode(b64)
    if raw[0] != 0x01 or len(raw) != 33:
        raise ValueError("not an Ed25519 note verifier key")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if expected.hex() != keyhash:
        raise ValueError("the key hash does not match the key")
    return name, expected, raw[1:]


def open_note(note: str, key: str):
    """C2SP signed-note: returns (origin, size, root) if the key's signature verifies."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, keyhash, public = parse_verifier(key)
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, b64 = line[2:].rsplit(" ", 1)
        blob = base64.b64decode(b64)
        if signer == name and blob[:4] == keyhash:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode())
            origin, size, root = text.splitlines()[:3]
            return origin, int(size), base64.b64decode(root)
    raise ValueError("no signature by this key")


def main() -> int:
    receipt = json.load(open(sys.argv[1]))
    origin, size, root = open_note(receipt["checkpoint"], sys.argv[2])
    print(f"checkpoint: {origin}, size {size}, signature OK")
    leaf = leaf_hash(receipt["entry"].encode())
    proof = [bytes.fromhex(h) for h in receipt["inclusion_proof"]]
    got = root_from_inclusion(receipt["index"], size, leaf, proof)
    if got != root:
        print("inclusion proof does NOT match the signed root")
        return 1
    print(f"entry {receipt['index']} is in the signed log: {receipt['entry']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
