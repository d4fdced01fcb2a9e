"""Writes cosignature-v1.txt: a C2SP tlog-cosignature (cosignature/v1, Ed25519)
vector computed from the text of https://c2sp.org/tlog-cosignature alone, with
Python's `cryptography` (not Silkgate's code). Run: python3 gen_cosignature.py

The checkpoint body and the timestamp are the specification's own example; the
witness key is derived from a fixed seed so the vector is reproducible (Ed25519
signatures are deterministic)."""
import base64, hashlib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

name = "witness.example.com/w1"
seed = bytes(range(32))
body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
timestamp = 1679315147

key = Ed25519PrivateKey.from_private_bytes(seed)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + pub).digest()[:4]
typed = base64.b64encode(b"\x04" + pub).decode()
vkey = name + "+" + key_id.hex() + "+" + typed
message = f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()
sig = key.sign(message)
line = "\u2014 " + name + " " + base64.b64encode(key_id + timestamp.to_bytes(8, "big") + sig).decode()

with open("cosignature-v1.txt", "w", encoding="utf-8") as f:
    f.write(f"seed_hex {seed.hex()}\n")
    f.write(f"vkey {vkey}\n")
    f.write(f"timestamp {timestamp}\n")
    f.write(f"line {line}\n")
    f.write("body\n" + body)
