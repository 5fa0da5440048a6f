"""The cryptography API with the official Python SDK: ``DaprClient.encrypt``
and ``DaprClient.decrypt`` (gRPC streams in Dapr's ``dapr.io/enc/v1``
scheme) against spar with a ``crypto.dapr.localstorage`` component holding
an RSA key and a 256-bit symmetric key."""

from __future__ import annotations

import base64
import os

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._crypto import DecryptOptions, EncryptOptions

from conftest import _stop, component_yaml, start_sidecar

SEGMENT = 64 * 1024

# The SDK warns on every call that the API is alpha.
pytestmark = pytest.mark.filterwarnings("ignore:The (En|De)crypt API is an Alpha:UserWarning")


@pytest.fixture(scope="module")
def crypto_sidecar(tmp_path_factory):
    work = tmp_path_factory.mktemp("crypto")
    keys = work / "keys"
    keys.mkdir()
    # Keys as Dapr's docs make them: an RSA key in a PKCS#8 PEM file (what
    # `openssl genpkey` writes) and 32 random bytes, base64.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (keys / "rsa-private-key.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (keys / "symmetric-key-256").write_text(base64.b64encode(os.urandom(32)).decode())
    (keys / "other-key-256").write_text(base64.b64encode(os.urandom(32)).decode())
    (work / "resources").mkdir()
    (work / "resources" / "crypto.yaml").write_text(
        component_yaml("localcrypto", "crypto.dapr.localstorage", {"path": str(keys)})
    )
    sc = start_sidecar(work)
    sc.keys_dir = keys
    yield sc
    _stop(sc.proc)


@pytest.fixture
def client(crypto_sidecar, monkeypatch):
    # The SDK's health check reads the sidecar's ports from the environment.
    for var in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(crypto_sidecar.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(crypto_sidecar.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    with DaprClient(address=crypto_sidecar.grpc_address) as c:
        yield c


@pytest.mark.parametrize(
    "key,algorithm",
    [("rsa-private-key.pem", "RSA"), ("symmetric-key-256", "AES")],
)
@pytest.mark.parametrize("size", [1, 100, SEGMENT, SEGMENT + 1, 1024 * 1024])
def test_round_trip(client, key, algorithm, size):
    data = os.urandom(size)
    enc = client.encrypt(
        data=data,
        options=EncryptOptions(component_name="localcrypto", key_name=key, key_wrap_algorithm=algorithm),
    ).read()
    header = enc.split(b"\n", 3)
    assert header[0] == b"dapr.io/enc/v1"
    assert f'"k":"{key}"'.encode() in header[1]
    dec = client.decrypt(data=enc, options=DecryptOptions(component_name="localcrypto")).read()
    assert dec == data


def decrypt_independently(doc: bytes, kek: bytes) -> bytes:
    """Dapr's dapr.io/enc/v1 read straight from its definition (dapr/kit
    schemes/enc/v1/README.md) with the `cryptography` package: spar's output
    is what any implementation of the format, daprd's included, reads."""
    import base64, json
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

    scheme, manifest, mac, payload = doc.split(b"\n", 3)
    assert scheme == b"dapr.io/enc/v1"
    m = json.loads(manifest)
    assert m["kw"] == 1  # A256KW
    fk = aes_key_unwrap(kek, base64.b64decode(m["wfk"]))
    hk = HKDF(hashes.SHA256(), 32, salt=None, info=b"header").derive(fk)
    h = hmac.HMAC(hk, hashes.SHA256())
    h.update(scheme + b"\n" + manifest + b"\n")
    h.verify(base64.b64decode(mac))
    np_ = base64.b64decode(m["np"])
    pk = HKDF(hashes.SHA256(), 32, salt=np_, info=b"payload").derive(fk)
    aead = (AESGCM if m["cph"] == 1 else ChaCha20Poly1305)(pk)
    size = SEGMENT + 16
    segments = [payload[i : i + size] for i in range(0, len(payload), size)]
    out = b""
    for i, seg in enumerate(segments):
        last = b"\x01" if i == len(segments) - 1 else b"\x00"
        out += aead.decrypt(np_ + i.to_bytes(4, "big") + last, seg, None)
    return out


@pytest.mark.parametrize("cipher", ["aes-gcm", "chacha20-poly1305"])
def test_output_reads_under_the_format_definition(client, crypto_sidecar, cipher):
    data = os.urandom(2 * SEGMENT + 123)
    enc = client.encrypt(
        data=data,
        options=EncryptOptions(
            component_name="localcrypto",
            key_name="symmetric-key-256",
            key_wrap_algorithm="A256KW",
            data_encryption_cipher=cipher,
        ),
    ).read()
    kek = base64.b64decode(crypto_sidecar.keys_dir.joinpath("symmetric-key-256").read_text())
    assert decrypt_independently(enc, kek) == data


def test_chacha_and_explicit_decryption_key(client):
    enc = client.encrypt(
        data="hello dapr",
        options=EncryptOptions(
            component_name="localcrypto",
            key_name="symmetric-key-256",
            key_wrap_algorithm="A256KW",
            data_encryption_cipher="chacha20-poly1305",
            omit_decryption_key_name=True,
        ),
    ).read()
    assert b'"cph":2' in enc.split(b"\n")[1]
    assert b'"k":' not in enc.split(b"\n")[1]
    dec = client.decrypt(
        data=enc, options=DecryptOptions(component_name="localcrypto", key_name="symmetric-key-256")
    ).read()
    assert dec == b"hello dapr"


def test_wrong_key_and_tampering_fail(client):
    enc = client.encrypt(
        data=b"secret" * 100,
        options=EncryptOptions(
            component_name="localcrypto", key_name="symmetric-key-256", key_wrap_algorithm="AES"
        ),
    ).read()
    with pytest.raises(grpc.RpcError) as e:
        client.decrypt(
            data=enc, options=DecryptOptions(component_name="localcrypto", key_name="other-key-256")
        ).read()
    assert "failed to validate the document's signature" in e.value.details()
    tampered = bytearray(enc)
    tampered[-20] ^= 1
    with pytest.raises(grpc.RpcError) as e:
        client.decrypt(data=bytes(tampered), options=DecryptOptions(component_name="localcrypto")).read()
    assert "failed to decrypt segment" in e.value.details()


def test_unknown_component_is_invalid_argument(client):
    with pytest.raises(grpc.RpcError) as e:
        client.encrypt(
            data=b"x",
            options=EncryptOptions(component_name="nope", key_name="k", key_wrap_algorithm="AES"),
        ).read()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "crypto provider nope not found" in e.value.details()
