#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/seed-*, from spec/vectors/ and
hand-written examples. Deterministic: running it again gives the same files.

    python3 fuzz/seeds.py          # from the repository root or from fuzz/

Seeds are meaningful inputs each target should accept (plus a few near misses), so the fuzzer
starts on the accepting paths instead of having to find JSON, base64 and signatures by itself.
The peer_request seeds are signed with Ed25519 in the target itself (its `signed` mode), so no
crypto library is needed here.
"""

import hashlib
import json
import os
import shutil
import struct

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
VECTORS = os.path.join(ROOT, "spec", "vectors")
CORPUS = os.path.join(FUZZ, "corpus")


def canonical(value):
    """RFC 8785 for the integer-only JSON this project uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Target:
    def __init__(self, name):
        self.dir = os.path.join(CORPUS, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.count = 0

    def add(self, label, data):
        if isinstance(data, str):
            data = data.encode()
        digest = hashlib.sha256(data).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40]
        with open(os.path.join(self.dir, f"seed-{safe}-{digest}"), "wb") as f:
            f.write(data)
        self.count += 1


def load(name):
    with open(os.path.join(VECTORS, name)) as f:
        return json.load(f)


entries = load("entries.json")
checkpoints = load("checkpoint.json")


def entry_decode():
    t = Target("entry_decode")
    for e in entries["entries"]:
        t.add(json.loads(e["entry"])["type"], e["entry"])
    # A few invalid vectors: each has one defect, so a mutation can fix it.
    for e in entries["invalid"][::4]:
        t.add("invalid-" + e["error"], e["bytes"])
    return t


def checkpoint():
    t = Target("checkpoint")
    for c in checkpoints:
        note = c["note"]
        t.add(f"note-{c['size']}", note)
        t.add(f"text-{c['size']}", note[: note.index("\n\n") + 1])
        t.add("verifier-key", c["verifier_key"])
        for w in c.get("cosigners") or []:
            t.add("witness-key", w)
        first_sig = note[note.index("\n\n") + 2 :].split("\n")[0]
        t.add("signature-line", first_sig)
    t.add("checkpoint-with-extension", "loyalty.example/brand-a\n7\n" + "A" * 43 + "=\nextension line\n")
    log = entries["log"]
    t.add("log-checkpoint", log["checkpoint"])
    t.add("receipt", json.dumps(log["receipt"], indent=1))
    return t


def tile_index_path(n):
    groups = ["%03d" % (n % 1000)]
    n //= 1000
    while n > 0:
        groups.append("x%03d" % (n % 1000))
        n //= 1000
    return "/".join(reversed(groups))


def tiles():
    t = Target("tiles")
    size = lambda n, count=1: struct.pack(">Q", n) + bytes([count - 1])
    for level, index, width, tree in [
        ("entries", 0, 256, 256),
        ("entries", 3, 17, 3 * 256 + 17),
        ("0", 1234067, 256, 1 << 40),
        ("1", 5, 200, 1 << 30),
        ("2", 0, 1, 1 << 16),
        ("0", 72057594037927935, 256, (1 << 64) - 1),
        ("7", 0, 1, (1 << 56)),
        ("63", 0, 1, (1 << 64) - 1),
    ]:
        path = f"{level}/{tile_index_path(index)}" + ("" if width == 256 else f".p/{width}")
        t.add(f"path-{level}", size(tree) + path.encode())
    for bad in ["0/x000/005", "00/000", "0/000.p/256", "entries/x001/x234/67"]:
        t.add("bad-path", size(1 << 20) + bad.encode())
    # Entry bundles from the example log.
    bundle = b""
    for e in entries["entries"][:8]:
        raw = e["entry"].encode()
        bundle += struct.pack(">H", len(raw)) + raw
    t.add("bundle-8", size(8, 8) + bundle)
    t.add("bundle-1", size(1, 1) + struct.pack(">H", 2) + b"{}")
    t.add("bundle-truncated", size(1, 1) + struct.pack(">H", 9) + b"{}")
    # Proof hashes (the tail is read as 32-byte hashes).
    proof = b"".join(bytes.fromhex(h) for h in entries["log"]["receipt"]["inclusion_proof"])
    t.add("proof", size(32) + struct.pack(">Q", 13) + proof)
    return t


def peer_request():
    t = Target("peer_request")
    nonce = "00112233445566778899aabbccddeeff"
    sig = "A" * 86 + "=="  # base64 of 64 zero bytes: well-formed, does not verify
    raw = [
        ("brand-a", "1700000000000", nonce, sig, "POST", "/v1/peer/redemptions/r-1/commit", b'{"preimage":"00"}'),
        ("brand-a", "1700000000000", nonce, sig, "GET", "/v1/log/proof/consistency?old=1&new=2", b""),
        ("", "1700000000000", nonce, sig, "POST", "/", b"{}"),
        ("brand-a", "17000000000000000", nonce, sig, "POST", "/", b"{}"),
        ("brand-a", "1", nonce.upper(), sig, "POST", "/", b"{}"),
        ("brand-a", "1", nonce, "AAAA", "POST", "/", b"{}"),
    ]
    for fields in raw:
        parts = [f.encode() if isinstance(f, str) else f for f in fields]
        t.add("raw", b"\x00" + b"\x00".join(parts))
    bodies = [
        ("POST", "/v1/peer/redemptions/r-1/prepare", b'{"authorisation":"auth-1"}'),
        ("POST", "/v1/peer/redemptions/r-1/refunds", b'{"points":5,"refund":"rf-1"}'),
        ("POST", "/v1/peer/agreements", b'{"terms":{}}'),
        ("POST", "/v1/witness/add-checkpoint", b"old 0\n\nloyalty.example/brand-a\n1\n"),
        ("GET", "/v1/log/entries?start=0&end=10", b""),
    ]
    change_data = [b"", b"brand-c", b"brand-c", b"PUT", b"/v1/other", b"{ }", b"1700000000001",
                   b"ffeeddccbbaa99887766554433221100", b"\x01\x02", b"another key"]
    for i, (method, path, body) in enumerate(bodies):
        for kind in range(10):
            if (i + kind) % 2 and kind != 0:
                continue
            fields = [method.encode(), path.encode(), b"1700000000000", nonce.encode(), change_data[kind], body]
            t.add(f"signed-change{kind}", b"\x01" + bytes([kind]) + b"\x00".join(fields))
    return t


def request_bodies():
    t = Target("request_bodies")
    receipt_entries = {json.loads(e["entry"])["type"]: json.loads(e["entry"]) for e in entries["entries"]}
    quote = receipt_entries["quote"]["body"]
    agreement = receipt_entries["agreement"]["body"]
    statement = receipt_entries["statement"]["body"]
    verifier = checkpoints[0]["verifier_key"]
    bodies = {
        0: [{"id": "earn-1", "points": 100}, {"id": "earn-2", "points": 5, "qualifying": False}],
        1: [{"id": "redeem-1", "points": 40}],
        2: [{"id": "adj-1", "points": 3, "direction": "credit", "reason": "goodwill"},
            {"id": "adj-2", "points": 3, "direction": "debit", "reason": "x" * 300}],
        3: [{"id": "hold-1", "points": 20, "expires_at": 1700000600000},
            {"id": "hold-2", "points": 20, "expires_at": 1700000600000, "payee": "brand-b",
             "condition": hashlib.sha256(b"secret").hexdigest(), "authorisation": "auth-1"}],
        4: [{"id": "auth-1", "payee": "brand-b", "max_points": 500, "expires_at": 1700003600000}],
        5: [{"id": "post-1"}, {"id": "post-2", "preimage": b"secret".hex()},
            {"id": "post-3", "preimage": "ab" * 64}, {"id": "post-4", "preimage": "ab" * 65}],
        6: [{"id": "void-1"}, {"id": "sys.void"}],
        7: [{"id": "refund-1", "points": 10}],
        8: [{"id": "tiers-1", "tiers": [{"name": "base", "threshold": 0}, {"name": "gold", "threshold": 1000}],
             "window_ms": 31536000000, "grace_ms": 0}],
        9: [{"id": "expiry-1", "lot_lifetime_ms": 31536000000}, {"id": "expiry-2"}],
        10: [{"id": "card-1", "currency": "EUR", "point_value": "0.0125", "valid_from": 1700000000000}],
        11: [{"id": "fx-1", "from": "EUR", "to": "USD", "rate": "1.085", "valid_from": 1700000000000}],
        12: [{"redemption": "r-1", "agreement": "agr-1", "payer": "brand-a", "member": "m-1", "points": 100},
             {"redemption": "r-" + "9" * 94, "agreement": "agr-1", "payer": "brand-a", "member": "m-1",
              "price_minor": 250, "ttl_ms": 60000}],
        13: [{"authorisation": "auth-1"}, {"authorisation": "auth-1", "hold_ms": 60000}],
        14: [{"quote": quote, "authorisation": "auth-1", "condition": hashlib.sha256(b"s").hexdigest(),
              "expires_at": 1700000600000}],
        15: [{"preimage": b"secret".hex(), "quote": quote}],
        16: [{"refund": "rf-1", "points": 5}],
        17: [agreement["terms"]],
        18: [agreement],
        19: [{"brand": "brand-a", "url": "http://127.0.0.1:7001", "verifier_key": verifier},
             {"brand": "brand-c", "url": "https://c.example/", "verifier_key": None}],
        20: [{"statement": {"brand": "brand-a", "member": "m-8f3a9c", "tier": "gold",
                            "valid_until": 1800000000000},
              "receipt": entries["log"]["receipt"]}],
        21: [{"name": "pos-1", "scopes": ["earn", "read"]}, {"name": "", "scopes": []}],
        23: [statement],
    }
    for kind, items in sorted(bodies.items()):
        for b in items:
            t.add(f"body{kind}", bytes([kind]) + canonical(b))
    note = checkpoints[1]["note"]
    proof = entries["log"]["receipt"]["inclusion_proof"]
    import base64
    lines = "".join(base64.b64encode(bytes.fromhex(h)).decode() + "\n" for h in proof[:2])
    t.add("witness", bytes([22]) + f"old 0\n\n{note}".encode())
    t.add("witness-proof", bytes([22]) + f"old 1\n{lines}\n{note}".encode())
    return t


def main():
    total = 0
    for make in (entry_decode, checkpoint, tiles, peer_request, request_bodies):
        t = make()
        print(f"{os.path.basename(t.dir)}: {t.count} seeds")
        total += t.count
    print(f"total: {total}")


if __name__ == "__main__":
    main()
