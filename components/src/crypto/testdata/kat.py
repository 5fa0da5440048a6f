# Known-answer values for scheme.rs, computed from the dapr.io/enc/v1
# definition with Python's `cryptography` package (independent of spar's
# code). Run: python3 kat.py (writes kat_*.txt here).
import base64, hashlib
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

fk = bytes(range(32))
np_ = b"crypto!"

def manifest(cph):
    return (b'{"k":"mykey","kw":1,"wfk":"' + base64.b64encode(fk) + b'","cph":' + str(cph).encode()
            + b',"np":"' + base64.b64encode(np_) + b'"}')

def header(cph):
    m = manifest(cph)
    hk = HKDF(hashes.SHA256(), 32, salt=None, info=b"header").derive(fk)
    h = hmac.HMAC(hk, hashes.SHA256())
    h.update(b"dapr.io/enc/v1\n" + m + b"\n")
    return b"dapr.io/enc/v1\n" + m + b"\n" + base64.b64encode(h.finalize()) + b"\n"

def document(aead_cls, cph, pt):
    pk = HKDF(hashes.SHA256(), 32, salt=np_, info=b"payload").derive(fk)
    aead = aead_cls(pk)
    segs = [pt[i:i + 65536] for i in range(0, len(pt), 65536)]
    out = header(cph)
    for i, s in enumerate(segs):
        last = b"\x01" if i == len(segs) - 1 else b"\x00"
        out += aead.encrypt(np_ + i.to_bytes(4, "big") + last, s, None)
    return out

open("kat_mac.txt", "w").write(header(1).split(b"\n")[2].decode())
open("kat_segment.txt", "w").write(document(AESGCM, 1, b"hello world")[-27:].hex())
big = bytes(i % 251 for i in range(65537))
open("kat_chacha_2seg.txt", "w").write(hashlib.sha256(document(ChaCha20Poly1305, 2, big)).hexdigest())
