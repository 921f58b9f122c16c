"""Keys, signing and opening DSSE envelopes, through securesystemslib (CryptoSigner, SSlibKey, dsse.Envelope).

Keys are PEM files as `openssl genpkey` writes them: Ed25519, or ECDSA on P-256. The private key
(TORCHYARD_SIGNING_KEY) is read only by the commands that sign (push, smoke), and refused when others than its owner
may read it, as ssh refuses such a key; the public key (KEY=) is all a verifier needs, offline. A key is named in
every message by its keyid (securesystemslib's: the sha256 of the public key's canonical form), never shown.

Opening an envelope says exactly what is wrong with it: not an envelope, unsigned, signed by another key, or signed
by this key over other bytes (changed after signing).
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from securesystemslib import dsse
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from builder import files, records
from builder.attest.intoto import Envelope, Statement
from builder.inputs import InputError, shown

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_KEY_BYTES = 64 * 1024
MAKE_KEYS = ("openssl genpkey -algorithm ed25519 -out signing.pem && chmod 600 signing.pem && "
             "openssl pkey -in signing.pem -pubout -out signing.pub.pem")


class Unverified(Exception):
    """An envelope that does not verify; str() says why (the caller names which attestation)."""


def _pem(value: str, name: str) -> bytes:
    if not value:
        raise InputError(f"name the key: {name}=<a PEM file> (the public key the attestations were signed with, as "
                         f"`{MAKE_KEYS.split(' && ')[-1]}` writes it)")
    try:
        return files.read_bounded(Path(value), MAX_KEY_BYTES)
    except (OSError, files.Refused) as e:
        why = e.strerror if isinstance(e, OSError) else str(e).removeprefix(f"{value} ")
        raise InputError(f"{name}={shown(value)} cannot be read ({why}); name a PEM key file") from None


def _supported(key, name: str, value: str) -> None:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(key.curve, ec.SECP256R1):
        return
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        kind = f"an ECDSA key on {key.curve.name}"
    else:  # RSAPrivateKey -> "an RSA key", DSAPublicKey -> "a DSA key"
        name_ = type(key).__name__.removeprefix("_").removesuffix("PrivateKey").removesuffix("PublicKey")
        kind = f"{'an' if name_[:1] in 'AEIOR' else 'a'} {name_} key"
    raise InputError(f"{name}={shown(value)} is {kind}; torchyard signs with Ed25519 or ECDSA P-256 (secp256r1) keys: "
                     f"{MAKE_KEYS}")


def signer(value: str, name: str = "TORCHYARD_SIGNING_KEY") -> CryptoSigner:
    """The private key at path `value`, ready to sign; InputError (exit 2) when it is not one torchyard signs with."""
    data = _pem(value, name)
    mode = os.stat(value).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{name}={shown(value)} may be read by others than its owner (mode {stat.S_IMODE(mode):o}); "
                         f"a private key is for its owner alone: chmod 600 {shown(value)}")
    if b"PRIVATE KEY" not in data:
        raise InputError(f"{name}={shown(value)} holds no PEM private key (-----BEGIN PRIVATE KEY-----); "
                         f"make a key pair with: {MAKE_KEYS}")
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for a key that needs a password
        raise InputError(f"{name}={shown(value)} is encrypted; torchyard reads an unencrypted PEM key in a file only "
                         "you can read (openssl pkey -in it -out a new file, chmod 600)") from None
    except ValueError as e:
        raise InputError(f"{name}={shown(value)} is not a PEM private key ({e}); make one with: {MAKE_KEYS}") from None
    _supported(key, name, value)
    return CryptoSigner(key)


def public_key(value: str, name: str = "KEY") -> SSlibKey:
    """The public key at path `value`; InputError (exit 2) for a private key or one torchyard does not verify with."""
    data = _pem(value, name)
    if b"PRIVATE KEY" in data:
        raise InputError(f"{name}={shown(value)} is a private key; give its public half "
                         "(openssl pkey -in <private.pem> -pubout -out <public.pem>): verifying needs nothing more")
    try:
        key = load_pem_public_key(data)
    except ValueError as e:
        raise InputError(f"{name}={shown(value)} is not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}") from None
    _supported(key, name, value)
    return SSlibKey.from_crypto(key)


def describe(key: SSlibKey) -> str:
    return f"{key.keytype} key {key.keyid[:16]}"


def sign(statement: Statement, with_key: CryptoSigner) -> bytes:
    """The statement in a DSSE envelope signed with the key: the bytes stored in the registry."""
    envelope = dsse.Envelope(msgspec.json.encode(statement), PAYLOAD_TYPE, {})
    envelope.sign(with_key)
    return msgspec.json.encode(envelope.to_dict())


def open_envelope(raw: bytes, key: SSlibKey, origin: str) -> Statement:
    """The statement inside a DSSE envelope that `key` signed; Unverified saying why when it is not one."""
    fix = "attach it anew: make push (or make smoke) with SIGNING_KEY set"
    try:
        envelope = records.parsed(raw, Envelope, Path(origin), fix)
        pae = dsse.Envelope(envelope.statement_bytes(), envelope.payload_type, {}).pae()
    except records.BrokenRecord as e:
        raise Unverified(f"is not a DSSE envelope ({e.problem})") from None
    except ValueError:  # the payload is not base64
        raise Unverified("is not a DSSE envelope (its payload is not base64)") from None
    if not envelope.signatures:
        raise Unverified("is unsigned (its DSSE envelope has no signature)")
    for signature in envelope.signatures:
        try:
            key.verify_signature(Signature(signature.keyid, _hex(signature.sig)), pae)
            break
        except (UnverifiedSignatureError, ValueError):
            continue
    else:
        if any(s.keyid == key.keyid for s in envelope.signatures):
            raise Unverified(f"does not verify: its signature by {describe(key)} does not match its content "
                             "(it was changed after signing)")
        others = ", ".join(sorted({s.keyid[:16] or "(no keyid)" for s in envelope.signatures}))
        raise Unverified(f"is signed by another key ({others}), not by KEY's {describe(key)}")
    if envelope.payload_type != PAYLOAD_TYPE:
        raise Unverified(f"carries a {shown(envelope.payload_type)}, not an in-toto statement ({PAYLOAD_TYPE})")
    try:
        return records.parsed(envelope.statement_bytes(), Statement, Path(origin), fix)
    except records.BrokenRecord as e:
        raise Unverified(f"is signed, but holds no in-toto Statement v1 ({e.problem})") from None


def _hex(sig: str) -> str:
    """A DSSE signature (base64) as securesystemslib's Signature holds it (hex); ValueError when it is not base64."""
    return base64.b64decode(sig, validate=True).hex()
