#!/usr/bin/env python3
"""Checks a loyalty ledger receipt by hand, step by step as spec/protocol.md §5 says, with the
Python standard library and the `cryptography` package (pip install cryptography) for Ed25519.

    python3 docs/check_receipt.py RECEIPT.json 'VERIFIER_KEY'

RECEIPT.json is a receipt as the node returns it ({index, entry, inclusion_proof, checkpoint});
VERIFIER_KEY is the brand's C2SP verifier key, pinned out of band (name+keyhash+base64).
Exit status 0: the receipt is valid and the entry is printed; 1: it is refused, with the step
and the reason; 2: usage.

    python3 docs/check_receipt.py --vectors spec/vectors/entries.json

checks the entry decoding (step 4) against the spec's test vectors: every example entry is
accepted and every invalid one refused with its class (spec/protocol.md §9). The steps (spec/protocol.md §5, spec/checkpoint.md §1-§3):

1. key: split at the first two `+`; canonical base64 of 0x01 || 32-byte key; key ID =
   SHA-256(name || 0x0A || 0x01 || key)[:4] as 8 lowercase hex digits;
2. signature: the note text ends at the newline before the note's LAST empty line; every line
   after it is `— <name> <canonical base64>`; a line with the key's name and key ID MUST verify
   over the note text (and if it fails, the note is refused);
3. checkpoint: origin == the key's name, no control characters; size in decimal without sign or
   leading zero, within 64 bits; canonical base64 root of 32 bytes; extension lines non-empty
   and free of control characters; index < size;
4. entry: spec/protocol.md §2.2 (at most 16384 bytes, UTF-8 JSON, integers only within
   ±(2^53-1), byte-for-byte the RFC 8785 encoding) and §3 (exactly `body`, `id`, `time`,
   `type`, `v`; `v` = 1; a known type; the type's body fields, their types and ranges, optional
   fields omitted at their default; an agreement's signatures verified). Then check that type,
   id and body are what you expect (the state machine's rules, §4, need the whole log:
   `loyalty verify`);
5. inclusion: RFC 9162 §2.1.3.2 from SHA-256(0x00 || entry) to the signed root.
"""
import base64
import binascii
import hashlib
import json
import re
import sys
import unicodedata

ENTRY_BYTES_MAX = 16384
NOTE_BYTES_MAX = 1 << 20
SIGNATURES_MAX = 100
INT_MAX = (1 << 53) - 1
ENTRY_TYPES = {
    "earn", "redeem", "adjust", "expire", "hold", "post", "void", "refund", "tier_policy",
    "tier_change", "rate_card", "expiry_policy", "tier_attestation", "fx_rate",
    "spend_authorisation", "agreement", "quote", "obligation", "obligation_refund", "statement",
}
ID_RE = re.compile(r"[A-Za-z0-9\-_.:]{1,128}\Z")
HASH_RE = re.compile(r"[0-9a-f]{64}\Z")


class Refused(Exception):
    """The receipt fails a step of spec/protocol.md §5."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")


def b64_canonical(text: str, step: str, what: str) -> bytes:
    """RFC 4648 §4 with padding, refusing any other spelling (spec/checkpoint.md rule 4)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(step, f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise Refused(step, f"{what} is not canonical base64")
    return raw


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def parse_verifier(key: str):
    """Step 1: (name, key ID, 32-byte public key)."""
    parts = key.split("+", 2)
    if len(parts) != 3:
        raise Refused("key", "a verifier key is <name>+<key ID>+<base64>")
    name, key_id, b64 = parts
    if not name or any(c.isspace() for c in name):
        raise Refused("key", "empty key name, or white space in it")
    if not re.fullmatch(r"[0-9a-f]{8}", key_id):
        raise Refused("key", "the key ID is not 8 lowercase hex digits")
    raw = b64_canonical(b64, "key", "the key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise Refused("key", "not an Ed25519 note verifier key (0x01 and 32 bytes)")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if expected.hex() != key_id:
        raise Refused("key", "the key ID does not match the key")
    return name, expected, raw[1:]


def open_note(note: str, key: str):
    """Steps 2 and 3: (origin, size, root) if the key's signature verifies."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, key_id, public = parse_verifier(key)
    data = note.encode("utf-8", errors="strict")
    if len(data) > NOTE_BYTES_MAX:
        raise Refused("signature", "the note is larger than 1 MiB")
    if any(b < 0x20 and b != 0x0A for b in data):
        raise Refused("signature", "the note holds a control byte other than newline")
    if not note.endswith("\n"):
        raise Refused("signature", "the note does not end in a newline")
    # The note text ends at the newline before the LAST empty line (it may hold empty lines).
    split = note.rfind("\n\n")
    if split < 0:
        raise Refused("signature", "the note has no empty line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise Refused("signature", "the note has no signature line")
    if len(lines) > SIGNATURES_MAX:
        raise Refused("signature", "more than 100 signature lines")
    verified = False
    for line in lines:
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if not m:
            raise Refused("signature", f"not a signature line: {line!r}")
        blob = b64_canonical(m.group(2), "signature", "a signature")
        if len(blob) < 5:
            raise Refused("signature", "a signature line holds fewer than 5 bytes")
        if m.group(1) != name or blob[:4] != key_id:
            continue  # another signer's line: ignored (spec/checkpoint.md rule 6)
        if len(blob) != 4 + 64:
            raise Refused("signature", "the key's signature is not 64 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode())
        except InvalidSignature:
            raise Refused("signature", "the key's signature does not verify") from None
        verified = True
    if not verified:
        raise Refused("signature", "no signature by the pinned key")

    body = text[:-1].split("\n")
    if len(body) < 3:
        raise Refused("checkpoint", "the note text has fewer than 3 lines")
    origin, size_text, root_text, extensions = body[0], body[1], body[2], body[3:]
    if origin != name:
        raise Refused("checkpoint", f"origin {origin!r} is not the key's name {name!r}")
    if has_control(origin):
        raise Refused("checkpoint", "control characters in the origin")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text) or int(size_text) >= 1 << 64:
        raise Refused("checkpoint", "the tree size is not a canonical 64-bit decimal")
    root = b64_canonical(root_text, "checkpoint", "the root hash")
    if len(root) != 32:
        raise Refused("checkpoint", "the root hash is not 32 bytes")
    for ext in extensions:
        if not ext or has_control(ext):
            raise Refused("checkpoint", "an empty extension line, or control characters in one")
    return origin, int(size_text), root


def jcs(value) -> str:
    """RFC 8785 for the values spec/protocol.md §2.1 allows (no floats)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in members) + "}"


CURRENCIES = set(
    "CLP ISK JPY KRW VND AED ARS AUD BGN BRL CAD CHF CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS "
    "INR MAD MXN MYR NOK NZD PEN PHP PLN QAR RON SAR SEK SGD THB TRY TWD UAH USD ZAR BHD JOD KWD "
    "OMR TND".split()
)
ROUNDINGS = {"half_even", "half_up", "down", "up"}
AGREEMENT_DOMAIN = "loyalty-agreement/v1"


def _bad(why: str):
    raise Refused("entry", f"invalid: {why}")


def _int(v, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        _bad(f"{what} is not an integer in {lo}..{hi}")
    return v


def _points(v, what="points"):
    return _int(v, 1, INT_MAX, what)


def _count(v, what):
    return _int(v, 0, INT_MAX, what)


def _text(v, pattern: str, what: str) -> str:
    if not isinstance(v, str) or not re.fullmatch(pattern, v):
        _bad(f"{what} is not valid")
    return v


def _member(v, what="member"):
    return _text(v, r"[A-Za-z0-9\-_.:]{1,128}", what)


def _entry_id(v, what):
    return _text(v, r"[A-Za-z0-9\-_.:]{1,128}", what)


def _brand(v, what):
    return _text(v, r"[a-z0-9\-.]{1,64}", what)


def _tier_name(v, what):
    return _text(v, r"[A-Za-z0-9\-_.:]{1,32}", what)


def _hash(v, what):
    return _text(v, r"[0-9a-f]{64}", what)


def _currency(v, what):
    if v not in CURRENCIES:
        _bad(f"{what} is not a currency of §3.4")
    return v


def _decimal(v, what):
    m = re.fullmatch(r"(0|[1-9][0-9]*)(?:\.([0-9]{0,17}[1-9]))?", v) if isinstance(v, str) else None
    mantissa = int(m.group(1) + (m.group(2) or "")) if m else 0
    if not 0 < mantissa < 1 << 64:
        _bad(f"{what} is not a decimal of §3.4")
    return v


def _fields(body, required: dict, optional: dict = None, what="body"):
    """Exactly the `required` members and any of the `optional` ones, each checked."""
    optional = optional or {}
    if not isinstance(body, dict):
        _bad(f"{what} is not an object")
    for k in body:
        if k not in required and k not in optional:
            _bad(f"unknown member {k!r} in {what}")
    for k, check in required.items():
        if k not in body:
            _bad(f"missing member {k!r} in {what}")
        check(body[k], k)
    for k, check in optional.items():
        if k in body:
            check(body[k], k)


def _quote(q, what="quote"):
    _fields(q, {
        "redemption": _entry_id, "agreement": _entry_id, "payer": _brand, "payee": _brand,
        "member": _member, "points": _points,
        "amount_minor": lambda v, w: _int(v, 1, INT_MAX, w),
        "currency": _currency, "rate_card_index": _count,
        "fee_bps": lambda v, w: _int(v, 0, 10000, w),
        "rounding": lambda v, w: v in ROUNDINGS or _bad(f"{w} is not a rounding"),
        "quoted_at": _count, "expires_at": _count,
    }, {"fx_rate_index": _count}, what)
    if q["payer"] == q["payee"]:
        _bad("a quote's payer and payee must differ")
    if q["expires_at"] <= q["quoted_at"]:
        _bad("a quote must expire after its quoted_at")


def _counterpart(v, what):
    _fields(v, {"index": _count, "leaf_hash": _hash, "time": _count}, what=what)


def _side(v, what):
    if v not in ("payable", "receivable"):
        _bad(f"{what} is neither payable nor receivable")


def _sided(body):
    has = "counterpart" in body
    if (body["side"] == "receivable") != has:
        _bad("a counterpart is required for receivable and forbidden for payable")


def _agreement(body):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    def direction(v, w):
        _fields(v, {"payer": _brand, "payee": _brand}, what=w)

    def directions(v, w):
        if not isinstance(v, list) or not 1 <= len(v) <= 2:
            _bad("one or two directions")
        for d in v:
            direction(d, w)

    def brands(v, w):
        if not isinstance(v, list) or len(v) != 2:
            _bad("two brands")
        for b in v:
            _brand(b, w)

    def terms(t, w):
        _fields(t, {
            "agreement": _entry_id, "brands": brands, "directions": directions,
            "settlement_currency": _currency, "fx_source": _brand,
            "fee_bps": lambda v, x: _int(v, 0, 10000, x),
            "credit_limit_minor": _points, "period_ms": _points, "period_origin": _count,
            "rounding": lambda v, x: v in ROUNDINGS or _bad(f"{x} is not a rounding"),
            "valid_from": _count,
        }, what=w)
        a, b = t["brands"]
        ds = [(d["payer"], d["payee"]) for d in t["directions"]]
        if a == b or any(p == q or {p, q} != {a, b} for p, q in ds) or len(set(ds)) != len(ds):
            _bad("the terms' brands and directions are not two brands and one or two directions between them")
        if t["fx_source"] not in (a, b):
            _bad("fx_source is not one of the brands")

    def signatures(v, w):
        if not isinstance(v, list):
            _bad("signatures is not a list")
        for s in v:
            _fields(s, {"brand": _brand, "signature": lambda x, y: None,
                        "verifier_key": lambda x, y: None}, what=w)

    _fields(body, {"terms": terms, "signatures": signatures})
    t = body["terms"]
    message = (AGREEMENT_DOMAIN + "\n" + jcs(t)).encode()
    signed = sorted(s["brand"] for s in body["signatures"])
    if signed != sorted(t["brands"]):
        _bad("not exactly one signature per brand of the terms")
    for s in body["signatures"]:
        try:
            _, _, public = parse_verifier(s["verifier_key"])
            sig = b64_canonical(s["signature"], "entry", "an agreement signature")
            Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
        except (Refused, InvalidSignature, ValueError):
            _bad(f"{s['brand']}'s signature of the terms does not verify")


def _statement(body):
    def gross(v, w):
        if not isinstance(v, list) or len(v) != 2:
            _bad("gross holds two items")
        for g in v:
            _fields(g, {"payer": _brand, "payee": _brand, "obligations_minor": _count,
                        "refunds_minor": _count,
                        "total_minor": lambda x, y: _int(x, -INT_MAX, INT_MAX, y),
                        "lines": _count}, what=w)

    def period(v, w):
        _fields(v, {"from": _count, "to": _count}, what=w)
        if v["from"] >= v["to"]:
            _bad("a period's from is not before its to")

    def statement(v, w):
        _fields(v, {"agreement": _entry_id, "currency": _currency, "period": period,
                    "gross": gross,
                    "net": lambda x, y: _fields(x, {"payer": _brand, "payee": _brand,
                                                    "amount_minor": _count}, what=y),
                    "lines": _count}, what=w)

    def signatures(v, w):
        if not isinstance(v, list) or len(v) != 2:
            _bad("a statement has two signatures")
        for s in v:
            _fields(s, {"brand": _brand, "signature": lambda x, y: None,
                        "verifier_key": lambda x, y: None}, what=w)

    _fields(body, {"statement": statement, "signatures": signatures})


def _tiers(v, what):
    if not isinstance(v, list) or not 1 <= len(v) <= 16:
        _bad("1 to 16 tiers")
    for t in v:
        _fields(t, {"name": _tier_name, "threshold": _count}, what="a tier")
    thresholds = [t["threshold"] for t in v]
    if thresholds[0] != 0 or any(a >= b for a, b in zip(thresholds, thresholds[1:])):
        _bad("tier thresholds start at 0 and strictly ascend")
    if len({t["name"] for t in v}) != len(v):
        _bad("tier names are not distinct")


def check_body(kind: str, body) -> None:
    """spec/protocol.md §3.3 (and §3.2): the body of an entry of type `kind`."""
    positive = lambda v, w: _points(v, w)  # noqa: E731
    preimage = lambda v, w: _text(v, r"(?:[0-9a-f]{2}){1,64}", w)  # noqa: E731
    reason = lambda v, w: (  # noqa: E731
        isinstance(v, str) and 1 <= len(v.encode()) <= 256 and not has_control(v)
    ) or _bad("reason is not 1 to 256 bytes without control characters")
    direction = lambda v, w: v in ("credit", "debit") or _bad("direction is not credit or debit")  # noqa: E731
    if kind == "earn":
        def qualifying(v, w):
            if v is True:
                raise Refused("entry", "non_canonical: qualifying written with its default, true")
            if v is not False:
                _bad("qualifying is not a boolean")

        _fields(body, {"member": _member, "points": _points}, {"qualifying": qualifying})
    elif kind == "redeem":
        _fields(body, {"member": _member, "points": _points})
    elif kind == "adjust":
        _fields(body, {"member": _member, "points": _points, "direction": direction,
                       "reason": reason})
    elif kind == "expire":
        _fields(body, {"member": _member, "lot": _count, "points": _points})
    elif kind == "hold":
        _fields(body, {"member": _member, "points": _points, "expires_at": _count},
                {"payee": _brand, "condition": _hash, "authorisation": _entry_id})
    elif kind == "post":
        _fields(body, {"hold": _entry_id}, {"preimage": preimage})
    elif kind == "void":
        _fields(body, {"hold": _entry_id})
    elif kind == "refund":
        _fields(body, {"redemption": _entry_id, "points": _points})
    elif kind == "tier_policy":
        _fields(body, {"tiers": _tiers, "window_ms": positive, "grace_ms": _count})
    elif kind == "tier_change":
        _fields(body, {"member": _member, "from": _tier_name, "to": _tier_name})
        if body["from"] == body["to"]:
            _bad("a tier change must change the tier")
    elif kind == "rate_card":
        _fields(body, {"currency": _currency, "point_value": _decimal, "valid_from": _count})
    elif kind == "expiry_policy":
        _fields(body, {}, {"lot_lifetime_ms": positive})
    elif kind == "tier_attestation":
        _fields(body, {"member": _member, "tier": _tier_name}, {"valid_until": _count})
    elif kind == "fx_rate":
        _fields(body, {"from": _currency, "to": _currency, "rate": _decimal,
                       "valid_from": _count})
    elif kind == "spend_authorisation":
        _fields(body, {"member": _member, "payee": _brand, "max_points": _points,
                       "expires_at": _count})
    elif kind == "agreement":
        _agreement(body)
    elif kind == "quote":
        _quote(body, "body")
    elif kind == "obligation":
        _fields(body, {"side": _side, "quote": lambda v, w: _quote(v, w)},
                {"counterpart": _counterpart})
        _sided(body)
    elif kind == "obligation_refund":
        _fields(body, {"side": _side, "payer": _brand, "redemption": _entry_id,
                       "refund": _entry_id, "points": _points, "amount_minor": _count},
                {"counterpart": _counterpart})
        _sided(body)
    elif kind == "statement":
        _statement(body)


def decode_entry(entry: str):
    """Step 4: spec/protocol.md §2.2 (steps 1-5) and §3; the decoded entry."""
    try:
        data = entry.encode("utf-8", errors="strict")
    except UnicodeEncodeError:
        raise Refused("entry", "malformed: not UTF-8") from None
    if len(data) > ENTRY_BYTES_MAX:
        raise Refused("entry", "too_large: longer than 16384 bytes")

    class NonInteger(Exception):
        pass

    def no_float(_text):
        raise NonInteger()

    def integer(text):
        if text == "-0":
            raise NonInteger()
        return int(text)

    duplicates = []

    def pairs(items):
        names = [k for k, _ in items]
        if len(set(names)) != len(names):
            duplicates.append(names)
        return dict(items)

    try:
        value = json.loads(
            entry,
            parse_float=no_float,
            parse_int=integer,
            parse_constant=no_float,
            object_pairs_hook=pairs,
        )
    except NonInteger:
        raise Refused("entry", "non_integer: a number with a fraction or exponent, or -0") from None
    except ValueError as e:
        raise Refused("entry", f"malformed: {e}") from None

    def walk(v):
        if isinstance(v, bool):
            return
        if isinstance(v, int) and not -INT_MAX <= v <= INT_MAX:
            raise Refused("entry", "out_of_range: an integer beyond ±(2^53-1)")
        if isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v):
            raise Refused("entry", "malformed: a lone surrogate (\\ud800-\\udfff)")
        if isinstance(v, list):
            for child in v:
                walk(child)
        if isinstance(v, dict):
            for k, child in v.items():
                walk(k)
                walk(child)

    walk(value)
    if duplicates or jcs(value) != entry:
        raise Refused("entry", "non_canonical: not the RFC 8785 bytes of its value")
    if not isinstance(value, dict) or set(value) != {"body", "id", "time", "type", "v"}:
        raise Refused("entry", "invalid: an entry has exactly body, id, time, type and v")
    if value["v"] != 1 or isinstance(value["v"], bool):
        raise Refused("entry", "unsupported_version: v is not 1")
    if value["type"] not in ENTRY_TYPES:
        raise Refused("entry", f"unknown_type: {value['type']!r}")
    if not isinstance(value["id"], str) or not ID_RE.match(value["id"]):
        raise Refused("entry", "invalid: the id is not 1-128 of A-Z a-z 0-9 - _ . :")
    t = value["time"]
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise Refused("entry", "invalid: the time is not a log time")
    check_body(value["type"], value["body"])
    return value


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list) -> bytes:
    """Step 5, RFC 9162 §2.1.3.2: the root that `proof` gives for `leaf` at `index` of `size`."""
    if index >= size:
        raise Refused("checkpoint", "index is not below the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Refused("inclusion", "the proof is too long")
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
        raise Refused("inclusion", "the proof is too short")
    return r


def check(receipt, key: str):
    """All five steps; the decoded entry, or `Refused`."""
    if not isinstance(receipt, dict) or set(receipt) != {
        "index", "entry", "inclusion_proof", "checkpoint"
    }:
        raise Refused("receipt", "a receipt has exactly index, entry, inclusion_proof, checkpoint")
    index, entry, proof = receipt["index"], receipt["entry"], receipt["inclusion_proof"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= INT_MAX:
        raise Refused("receipt", "index is not a log index")
    if not isinstance(entry, str) or not isinstance(receipt["checkpoint"], str):
        raise Refused("receipt", "entry and checkpoint are strings")
    if not isinstance(proof, list) or not all(isinstance(h, str) and HASH_RE.match(h) for h in proof):
        raise Refused("receipt", "inclusion_proof is not a list of 64 lowercase hex digits each")
    origin, size, root = open_note(receipt["checkpoint"], key)
    if index >= size:
        raise Refused("checkpoint", f"index {index} is not below the tree size {size}")
    value = decode_entry(entry)
    got = root_from_inclusion(index, size, leaf_hash(entry.encode()), [bytes.fromhex(h) for h in proof])
    if got != root:
        raise Refused("inclusion", "the inclusion proof does NOT match the signed root")
    return origin, size, value


def check_vectors(path: str) -> int:
    """Step 4 against spec/vectors/entries.json; prints each disagreement, exit 1 if any."""
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    wrong = 0
    for e in vectors["entries"]:
        try:
            decode_entry(e["entry"])
        except Refused as r:
            wrong += 1
            print(f"example {e['name']} refused: {r}")
    for e in vectors["invalid"]:
        try:
            decode_entry(e["bytes"])
            got = "accepted"
        except Refused as r:
            got = str(r).split(": ")[1]
        if got != e["error"]:
            wrong += 1
            print(f"invalid case '{e['why']}': {got}, expected {e['error']}")
    print(f"{len(vectors['entries'])} examples, {len(vectors['invalid'])} invalid cases, {wrong} wrong")
    return 1 if wrong else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--vectors":
        return check_vectors(sys.argv[2])
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        receipt = json.load(f)
    try:
        origin, size, value = check(receipt, sys.argv[2])
    except Refused as e:
        print(f"REFUSED at {e}")
        return 1
    print(f"checkpoint: {origin}, size {size}, signature OK")
    print(f"entry {receipt['index']} is in the signed log: type {value['type']}, id {value['id']}")
    print(receipt["entry"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
