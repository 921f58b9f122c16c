"""Signing and opening DSSE envelopes (builder/attest/dsse.py) with real Ed25519 and P-256 keys: what verifies, and
each way it does not, with its own message; key files refused as input (exit 2) before any work."""

import base64
import json

import msgspec
import pytest

from builder.attest import dsse, intoto
from builder.inputs import InputError

DIGEST = "sha256:" + "1" * 64


def statement(predicate=None) -> intoto.Statement:
    return intoto.Statement(type=intoto.STATEMENT_V1, subject=(intoto.subject("r.example/ml/torchyard", DIGEST),),
                            predicate_type="urn:test", predicate=predicate or {"status": "SKIPPED"})


def edited(envelope: bytes, change) -> bytes:
    data = json.loads(envelope)
    change(data)
    return json.dumps(data).encode()


def reopened(envelope: bytes, key) -> str:
    with pytest.raises(dsse.Unverified) as refused:
        dsse.open_envelope(envelope, key, "r.example/ml/torchyard@sha256:…")
    return str(refused.value)


@pytest.mark.parametrize("name, scheme", [("ed25519", "ed25519"), ("p256", "ecdsa-sha2-nistp256")])
def test_a_signed_statement_opens_with_its_public_key(keys, name, scheme):
    signer = dsse.signer(str(keys[name]))
    envelope = dsse.sign(statement(), signer)
    data = json.loads(envelope)
    assert data["payloadType"] == "application/vnd.in-toto+json" and len(data["signatures"]) == 1
    assert data["signatures"][0]["keyid"] == signer.public_key.keyid
    key = dsse.public_key(str(keys[name].with_suffix(".pub")))
    assert key.scheme == scheme and key.keyid == signer.public_key.keyid
    assert dsse.open_envelope(envelope, key, "here") == statement()


def test_a_changed_payload_is_named_changed_after_signing(keys):
    envelope = dsse.sign(statement(), dsse.signer(str(keys["ed25519"])))
    forged = base64.b64encode(msgspec.json.encode(statement({"status": "PASS"}))).decode()
    message = reopened(edited(envelope, lambda d: d.update(payload=forged)), dsse.public_key(str(keys["ed25519"].with_suffix(".pub"))))
    assert message.startswith("does not verify: its signature by ed25519 key ")
    assert message.endswith("does not match its content (it was changed after signing)")


def test_a_changed_payload_type_does_not_verify_either(keys):
    """DSSE signs the type with the payload (PAE): relabelling a statement breaks its signature."""
    envelope = dsse.sign(statement(), dsse.signer(str(keys["ed25519"])))
    message = reopened(edited(envelope, lambda d: d.update(payloadType="text/plain")),
                       dsse.public_key(str(keys["ed25519"].with_suffix(".pub"))))
    assert "it was changed after signing" in message


def test_another_keys_signature_is_named_with_both_keyids(keys):
    stranger = dsse.signer(str(keys["stranger"]))
    mine = dsse.public_key(str(keys["ed25519"].with_suffix(".pub")))
    message = reopened(dsse.sign(statement(), stranger), mine)
    assert message == (f"is signed by another key ({stranger.public_key.keyid[:16]}), not by KEY's ed25519 key "
                       f"{mine.keyid[:16]}")


def test_another_keys_signature_under_this_keys_id_is_a_bad_signature(keys):
    mine = dsse.public_key(str(keys["ed25519"].with_suffix(".pub")))
    envelope = dsse.sign(statement(), dsse.signer(str(keys["stranger"])))
    posing = edited(envelope, lambda d: d["signatures"][0].update(keyid=mine.keyid))
    assert "does not match its content" in reopened(posing, mine)


def test_an_envelope_signed_by_two_keys_opens_with_either(keys):
    envelope = dsse.sign(statement(), dsse.signer(str(keys["ed25519"])))
    second = json.loads(dsse.sign(statement(), dsse.signer(str(keys["p256"]))))["signatures"][0]
    both = edited(envelope, lambda d: d["signatures"].append(second))
    for name in ("ed25519", "p256"):
        assert dsse.open_envelope(both, dsse.public_key(str(keys[name].with_suffix(".pub"))), "here") == statement()


@pytest.mark.parametrize("raw, says", [
    (b"not json", "is not a DSSE envelope (not JSON"),
    (b'{"payload": "e30=", "signatures": []}', "is not a DSSE envelope (Object missing required field `payloadType`"),
    (b'{"payload": "%%%", "payloadType": "application/vnd.in-toto+json"}', "its payload is not base64"),
    (b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json"}', "is unsigned (its DSSE envelope has no signature)"),
    (b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid": "k", "sig": "!"}]}',
     "is signed by another key (k)"),
], ids=["not json", "no payload type", "payload not base64", "unsigned", "a signature that is no base64"])
def test_what_is_no_signed_envelope_says_what_it_is(keys, raw, says):
    assert says in reopened(raw, dsse.public_key(str(keys["ed25519"].with_suffix(".pub"))))


def test_a_signed_envelope_of_something_else_than_a_statement_is_named(keys):
    from securesystemslib import dsse as ssl_dsse
    envelope = ssl_dsse.Envelope(b'{"hello": 1}', dsse.PAYLOAD_TYPE, {})
    envelope.sign(dsse.signer(str(keys["ed25519"])))
    message = reopened(json.dumps(envelope.to_dict()).encode(), dsse.public_key(str(keys["ed25519"].with_suffix(".pub"))))
    assert message.startswith("is signed, but holds no in-toto Statement v1 (Object missing required field `_type`")


# ---------------------------------------------------------------- key files as input


def test_a_private_key_others_may_read_is_refused(keys):
    keys["ed25519"].chmod(0o644)
    with pytest.raises(InputError, match=r"may be read by others than its owner \(mode 644\).*chmod 600"):
        dsse.signer(str(keys["ed25519"]), "SIGNING_KEY")


@pytest.mark.parametrize("case, says", [
    ("public", "holds no PEM private key"),
    ("p384", "is an ECDSA key on secp384r1; torchyard signs with Ed25519 or ECDSA P-256 (secp256r1) keys"),
    ("rsa", "is an RSA key; torchyard signs with Ed25519"),
    ("missing", "cannot be read (No such file or directory)"),
    ("encrypted", "is encrypted; torchyard reads an unencrypted PEM key"),
    ("garbage", "is not a PEM private key"),
])
def test_signing_keys_torchyard_cannot_use_are_refused(keys, tmp_path, case, says):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    path = {"public": keys["ed25519"].with_suffix(".pub"), "p384": keys["p384"], "missing": tmp_path / "none.pem"}.get(case)
    if case == "encrypted":
        path = tmp_path / "encrypted.pem"
        path.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    if case == "rsa":
        from cryptography.hazmat.primitives.asymmetric import rsa
        path = tmp_path / "rsa.pem"
        path.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    if case == "garbage":
        path = tmp_path / "garbage.pem"
        path.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    if path.exists():
        path.chmod(0o600)
    with pytest.raises(InputError, match="SIGNING_KEY=") as refused:
        dsse.signer(str(path), "SIGNING_KEY")
    assert says in str(refused.value)


@pytest.mark.parametrize("case, says", [
    ("private", "is a private key; give its public half (openssl pkey -in <private.pem> -pubout"),
    ("p384", "is an ECDSA key on secp384r1"),
    ("empty", "name the key: KEY=<a PEM file>"),
    ("certificate", "is not a PEM public key"),
])
def test_verifying_keys_torchyard_cannot_use_are_refused(keys, tmp_path, case, says):
    path = {"private": str(keys["ed25519"]), "p384": str(keys["p384"].with_suffix(".pub")), "empty": ""}.get(case)
    if case == "certificate":
        (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        path = str(tmp_path / "cert.pem")
    with pytest.raises(InputError) as refused:
        dsse.public_key(path, "KEY")
    assert says in str(refused.value)
