#!/usr/bin/env python3
"""Verifies a Silkgate decision and its inclusion in the node's decision log.

Written from the README's "Formats for verifiers" alone; docs/verify-python.md explains
it step by step. Verification needs only PyNaCl and the protobuf module generated from
proto/ (with the `protobuf` runtime); `--node` also needs grpcio.

    verify_decision.py --public-key KEY --bundle evidence.json
    verify_decision.py --public-key KEY --decision decision.pb --proof proof.pb
    verify_decision.py --public-key KEY --decision decision.pb --node 127.0.0.1:50051
    verify_decision.py --public-key KEY --decision decision.pb --proof proof.pb --request request.pb

KEY is the node's raw Ed25519 public key in hex (64 digits) or its verifier key string
(`NodeInfo.log_verifier_key`, `silkgate key show`), which also names the log's origin.
Get it from the node's operator, not from the node you are checking.

Exit codes: 0 valid, 1 the evidence does not verify, 2 an error (bad arguments, a file
that cannot be read, the node cannot be reached).
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import sys

import nacl.exceptions
import nacl.signing
from silkgate.v1 import silkgate_pb2 as pb

PAYLOAD_TYPE = "application/vnd.silkgate.decision.v1+protobuf"
BUNDLE_FORMAT = "silkgate-evidence-v1"


class Invalid(Exception):
    """The evidence does not verify."""


class Error(Exception):
    """The check could not be made."""


# Keys ---------------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    """Key id: lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """Signed-note key hash: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def parse_public_key(text: str):
    """Returns (raw 32-byte key, origin or None) from hex or a verifier key string."""
    text = text.strip()
    if "+" not in text:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise Error("--public-key: neither 64 hex digits nor a verifier key string") from None
        if len(key) != 32:
            raise Error(f"--public-key: {len(key)} bytes, an Ed25519 key has 32")
        return key, None
    # <origin>+<8 hex digits of the key hash>+<base64(0x01 || key)>
    parts = text.split("+", 2)  # the origin has no `+`, the base64 may
    if len(parts) != 3:
        raise Error("--public-key: a verifier key string is <origin>+<hash>+<base64 key>")
    origin, hash_hex, typed_b64 = parts
    try:
        typed = base64.b64decode(typed_b64, validate=True)
    except binascii.Error:
        raise Error("--public-key: the key is not base64") from None
    if len(typed) != 33 or typed[0] != 0x01:
        raise Error("--public-key: not an Ed25519 verifier key (0x01 and 32 bytes)")
    key = typed[1:]
    if hash_hex != note_key_hash(origin, key).hex():
        raise Error("--public-key: the key hash does not match the origin and key")
    return key, origin


# The signed decision (DSSE v1) -------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(payload) SP payload."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def verify_decision(envelope: pb.SignedDecision, public_key: bytes) -> pb.Decision:
    """Checks the envelope's signature by `public_key` and returns the decoded Decision."""
    # 1. The payload type.
    if envelope.payload_type != PAYLOAD_TYPE:
        raise Invalid(f"payload type `{envelope.payload_type}`, expected `{PAYLOAD_TYPE}`")
    # 2. A signature under the trusted key's id, verified over the PAE of the exact
    #    payload bytes. libsodium's verification is strict: it refuses a non-canonical
    #    S and small-order keys and R points.
    kid = key_id(public_key)
    sigs = [s for s in envelope.signatures if s.keyid == kid]
    if not sigs:
        found = ", ".join(s.keyid for s in envelope.signatures) or "none"
        raise Invalid(f"no signature by key {kid} (signed by: {found})")
    try:
        nacl.signing.VerifyKey(public_key).verify(pae(envelope.payload_type, envelope.payload), sigs[0].sig)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise Invalid(f"the signature by key {kid} does not verify") from None
    # 3. Only now decode the payload: the signed bytes, never a re-encoding.
    decision = pb.Decision()
    try:
        decision.ParseFromString(envelope.payload)
    except Exception as e:  # protobuf raises DecodeError, or others on some inputs
        raise Invalid(f"the payload is not a Decision: {e}") from None
    if decision.key_id != kid:
        raise Invalid(f"the decision names key {decision.key_id}, the signature key {kid}")
    return decision


def check_expiry(decision: pb.Decision, at: datetime.datetime) -> None:
    """4. Evidence held as current is rejected after `not_after`."""
    if not decision.HasField("not_after"):
        raise Invalid("the decision has no not_after")
    # Compare as (seconds, nanos): a datetime keeps only microseconds.
    t = decision.not_after
    at_ts = pb.Decision().not_after  # a google.protobuf.Timestamp
    at_ts.FromDatetime(at)
    if (at_ts.seconds, at_ts.nanos) > (t.seconds, t.nanos):
        raise Invalid(f"the decision expired at {t.ToJsonString()} (checked at {at_ts.ToJsonString()})")


def check_request(decision: pb.Decision, request: bytes) -> None:
    """5. request_sha256 is over the DeploymentRequest bytes as the node received them."""
    if hashlib.sha256(request).digest() != decision.request_sha256:
        raise Invalid("request_sha256 is not the SHA-256 of the request bytes given")


# The decision log (RFC 6962 / 9162) --------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list, root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: the audit path from the leaf up to the root."""
    if index >= size:
        raise Invalid(f"inclusion proof: index {index} is not below tree size {size}")
    if any(len(h) != 32 for h in proof):
        raise Invalid("inclusion proof: a hash is not 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Invalid("inclusion proof: longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Invalid("inclusion proof: shorter than the path to the root")
    if r != root:
        raise Invalid("inclusion proof: the path does not lead to the checkpoint's root")


def open_checkpoint(note: str, public_key: bytes, origin=None):
    """Verifies a checkpoint (a C2SP signed note) and returns (origin, size, root)."""
    # The last blank line separates the text from the signature lines.
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Invalid("checkpoint: not a signed note")
    body, signatures = note[: split + 1], note[split + 2 :]
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise Invalid("checkpoint: the body needs origin, size and root lines")
    name, size_line, root_line = lines[:3]  # C2SP allows extension lines after these
    if origin is not None and name != origin:
        raise Invalid(f"checkpoint: origin `{name}`, the verifier key names `{origin}`")
    if not size_line.isdigit() or not size_line.isascii() or (len(size_line) > 1 and size_line[0] == "0"):
        raise Invalid(f"checkpoint: size `{size_line}` is not a decimal number")
    try:
        root = base64.b64decode(root_line, validate=True)
    except binascii.Error:
        raise Invalid("checkpoint: the root is not base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_line:
        raise Invalid("checkpoint: the root is not 32 bytes in padded standard base64")
    # A signature line: "— " (U+2014, space), key name, space, base64(key hash || sig).
    # Lines by other keys (witness cosignatures) are skipped.
    want = note_key_hash(name, public_key)
    for line in signatures.split("\n")[:-1]:
        if not line.startswith("\u2014 "):
            raise Invalid(f"checkpoint: malformed signature line `{line}`")
        line_name, _, blob = line[2:].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise Invalid(f"checkpoint: malformed signature line `{line}`") from None
        if line_name != name or raw[:4] != want:
            continue
        try:
            nacl.signing.VerifyKey(public_key).verify(body.encode(), raw[4:])
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise Invalid("checkpoint: the node's signature does not verify") from None
        return name, int(size_line), root
    raise Invalid(f"checkpoint: no signature by the node key for `{name}`")


# Where the evidence comes from -------------------------------------------------------


def read_bundle(path: str):
    """An evidence bundle of `silkgate log prove`: returns (entry, index, size, hashes, note)."""
    try:
        with open(path, encoding="utf-8") as f:
            v = json.load(f)
    except OSError as e:
        raise Error(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise Invalid(f"bundle: not JSON: {e}") from None
    try:
        if v["format"] != BUNDLE_FORMAT:
            raise Invalid(f"bundle: format `{v['format']}`, expected `{BUNDLE_FORMAT}`")
        entry = base64.b64decode(v["entry"], validate=True)
        hashes = [base64.b64decode(h, validate=True) for h in v["inclusion_proof"]]
        index, size, note = v["log_index"], v["tree_size"], v["checkpoint"]
    except (KeyError, TypeError, binascii.Error) as e:
        raise Invalid(f"bundle: missing or malformed field: {e}") from None
    if not (isinstance(index, int) and isinstance(size, int) and isinstance(note, str)):
        raise Invalid("bundle: log_index and tree_size are numbers, checkpoint a string")
    return entry, index, size, hashes, note


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Error(f"{path}: {e.strerror}") from None


def proof_fields(proof: pb.InclusionProof):
    note = proof.checkpoint.note if proof.HasField("checkpoint") else None
    return proof.entry, proof.index, proof.tree_size, list(proof.hashes), note


def fetch_proof(address: str, decision_id: str, timeout: float) -> pb.InclusionProof:
    """GetInclusionProof by decision id against the latest checkpoint (tree_size 0)."""
    import grpc  # only this mode needs grpcio

    request = pb.GetInclusionProofRequest(decision_id=decision_id, tree_size=0)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/silkgate.v1.DecisionLog/GetInclusionProof",
            request_serializer=pb.GetInclusionProofRequest.SerializeToString,
            response_deserializer=pb.InclusionProof.FromString,
        )
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise Invalid(f"the node's log has no decision {decision_id}: {e.details()}") from None
            raise Error(f"GetInclusionProof at {address}: {e.code().name}: {e.details()}") from None


# The whole check ---------------------------------------------------------------------


def parse_time(text: str) -> datetime.datetime:
    if text == "now":
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Error(f"--valid-at: `{text}` is not `now` or an RFC 3339 time") from None
    if t.tzinfo is None:
        raise Error(f"--valid-at: `{text}` has no time zone (add Z for UTC)")
    return t


def read_proof(path: str):
    try:
        return proof_fields(pb.InclusionProof.FromString(read_bytes(path)))
    except Error:
        raise
    except Exception as e:  # protobuf's DecodeError
        raise Invalid(f"--proof: not an InclusionProof: {e}") from None


def enum_name(enum, value: int) -> str:
    return enum.Name(value) if value in enum.values() else str(value)


def run(args) -> list:
    public_key, origin = parse_public_key(args.public_key)
    held = read_bytes(args.decision) if args.decision else None
    if args.bundle:
        evidence = read_bundle(args.bundle)
    elif args.proof:
        evidence = read_proof(args.proof)
    else:
        evidence = None  # fetched from the node once the decision's id is known

    # The decision: the one held, or else the log entry itself.
    envelope_bytes = held if held is not None else evidence[0]
    envelope = pb.SignedDecision()
    try:
        envelope.ParseFromString(envelope_bytes)
    except Exception as e:  # protobuf's DecodeError
        raise Invalid(f"not a SignedDecision: {e}") from None
    decision = verify_decision(envelope, public_key)
    report = [
        f"valid: decision {decision.decision_id} ({enum_name(pb.Verdict, decision.verdict)}, "
        f"{decision.jurisdiction}) for request {decision.request_id}, signed by key {key_id(public_key)}"
    ]
    for rule in decision.matched_rules:
        report.append(f"  {enum_name(pb.Effect, rule.effect)} {rule.id}: {rule.message} ({rule.citation})")
    if args.valid_at:
        at = parse_time(args.valid_at)
        check_expiry(decision, at)
        report.append(f"current at {at.isoformat()} (not after {decision.not_after.ToJsonString()})")
    if args.request:
        check_request(decision, read_bytes(args.request))
        report.append("the request sent is the one decided (request_sha256 matches)")

    # The inclusion proof and the checkpoint it is checked against.
    if evidence is None:
        evidence = proof_fields(fetch_proof(args.node, decision.decision_id, args.timeout))
    entry, index, size, hashes, note = evidence
    if args.checkpoint:
        note = read_bytes(args.checkpoint).decode("utf-8", "replace")
    if note is None:
        raise Invalid("the proof carries no checkpoint (ask with tree_size 0, or give --checkpoint)")
    log_origin, cp_size, root = open_checkpoint(note, public_key, origin)
    if cp_size != size:
        raise Invalid(f"checkpoint size {cp_size} differs from the proof's tree size {size}")
    # The leaf is the SignedDecision bytes as returned: it must be the decision held.
    if entry != envelope_bytes:
        raise Invalid(f"log entry {index} is not the decision held (its bytes differ)")
    verify_inclusion(leaf_hash(entry), index, size, hashes, root)
    report.append(f"valid: entry {index} of log {log_origin} at size {size} (root {root.hex()})")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Verify a Silkgate decision and its inclusion in the node's log.")
    p.add_argument("--public-key", required=True, help="node key: 64 hex digits or the verifier key string")
    p.add_argument("--decision", help="file of SignedDecision protobuf bytes (as EvaluateResponse.decision)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="evidence bundle JSON written by `silkgate log prove`")
    src.add_argument("--proof", help="file of InclusionProof protobuf bytes (GetInclusionProof, tree_size 0)")
    src.add_argument("--node", metavar="HOST:PORT", help="ask this node for the proof (needs grpcio and --decision)")
    p.add_argument("--request", help="file of the DeploymentRequest bytes sent: checks request_sha256")
    p.add_argument("--checkpoint", help="checkpoint note file, for a proof asked at a fixed tree size")
    p.add_argument("--valid-at", metavar="TIME", help="also reject the decision after not_after: `now` or RFC 3339")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node (default 10)")
    args = p.parse_args(argv)
    if args.node and not args.decision:
        p.error("--node needs --decision")
    try:
        for line in run(args):
            print(line)
        return 0
    except Invalid as e:
        print(f"invalid: {e}")
        return 1
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
