"""Sigstore signatures on registry cache entries and pushed images (docs/cache.md, "What is
trusted").

The format is the containers tools' own (c/image, cosign): a signature is a "simple
signing" payload naming the manifest digest and the signed reference, signed by an
ECDSA (or Ed25519, RSA) key, stored as a sigstore attachment beside the image in the same
repository: an OCI manifest tagged `sha256-<manifest hex>.sig` whose layer is the payload
and whose layer annotation `dev.cosignproject.cosign/signature` is the signature. A host
whose skopeo/podman has sigstore verifies these with a policy.json `sigstoreSigned` entry.

composer makes and checks them itself: Debian 12's skopeo 1.9.3 (c/image 5.23.1-4) is built
with sigstore disabled — `--sign-by-sigstore-private-key` and a `sigstoreSigned` policy
both fail with "Debian-local change: sigstore disabled". skopeo still moves every byte:
the attachment is copied to and from the registry with it, and it checks every blob
against its digest.

The private key is decrypted in memory only; its passphrase is read from a file. Neither
reaches argv, a file composer writes, a layer or a log line."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.emit.oci import write_one_manifest_layout
from composer.errors import ComposerError

PAYLOAD_TYPE = "cosign container image signature"
PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PRIVATE_PEM_TYPES = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1  # go-tuf's `encrypted` accepts these values only


@dataclass(frozen=True)
class Signing:
    """Key files of one build or push; empty paths are 'not given'."""

    sign_key: str = ""  # sigstore private key (PEM, encrypted) that signs what is pushed
    passphrase_file: str = ""  # the private key's passphrase, on its first line
    verify_key: str = ""  # sigstore public key every --cache-from entry must be signed with


# --- the payload and the attachment (pure) -------------------------------------------------


def attachment_tag(digest: str) -> str:
    """Where the containers conventions (and cosign) keep a manifest's signatures."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}.sig"


def payload_document(digest: str, reference: str, timestamp: int) -> bytes:
    """What is signed, as c/image writes it (signature/internal/sigstore_payload.go)."""
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": {"creator": "composer", "timestamp": timestamp},
    }, separators=(",", ":")).encode()


def payload_problem(payload: bytes, digest: str, reference: str) -> str:
    """Why a payload (whose signature verified) does not sign digest as reference; "" when
    it does. Exact fields, as c/image parses them."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        if set(critical) != {"identity", "image", "type"} or critical["type"] != PAYLOAD_TYPE:
            return "not a container image signature"
        signed_digest = critical["image"]["docker-manifest-digest"]
        signed_reference = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError):
        return "its payload is not a signature payload"
    if signed_digest != digest:
        return f"it signs another manifest ({str(signed_digest)[:19]}…)"
    if signed_reference != reference:
        return f"it signs another reference ({signed_reference})"
    return ""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_attachment_layout(folder: Path, payload: bytes, signature: bytes) -> None:
    """An OCI layout holding the signature attachment as c/image writes it: an OCI manifest,
    a config listing the payload as its one layer, the payload with the signature annotated."""
    payload_digest = sha256_digest(payload)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [payload_digest]}}, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": PAYLOAD_MEDIA_TYPE, "digest": payload_digest, "size": len(payload),
                    "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}}],
    }, separators=(",", ":")).encode()
    write_one_manifest_layout(folder, (payload, config), manifest)


def read_attachment_dir(folder: Path) -> list[tuple[bytes, str]]:
    """(payload, base64 signature) of each signature in an attachment copied with skopeo
    to a dir: folder (skopeo checked every blob against the manifest's digest)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return []
    found = []
    for layer in manifest.get("layers") or ():
        if not isinstance(layer, dict) or layer.get("mediaType") != PAYLOAD_MEDIA_TYPE:
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        hexpart = str(layer.get("digest", "")).removeprefix("sha256:")
        if not signature or len(hexpart) != 64:
            continue
        try:
            found.append(((folder / hexpart).read_bytes(), str(signature)))
        except OSError:
            continue
    return found


# --- keys ----------------------------------------------------------------------------------


def pem_body(text: str, types: Sequence[str]) -> tuple[str, bytes] | None:
    """(type, DER/content) of the first PEM block of one of types in text."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for kind in types:
            if line.strip() == f"-----BEGIN {kind}-----":
                end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == f"-----END {kind}-----"), None)
                if end is None:
                    return None
                try:
                    return kind, base64.b64decode("".join(lines[i + 1:end]), validate=True)
                except ValueError:
                    return None
    return None


def decrypt_private_key(document: bytes, passphrase: bytes) -> bytes:
    """go-tuf `encrypted.Decrypt`: scrypt KDF, NaCl secretbox. Raises ValueError."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    data = json.loads(document)
    kdf, cipher = data["kdf"], data["cipher"]
    params = kdf["params"]
    if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox" or \
            (params["N"], params["r"], params["p"]) != (SCRYPT_N, SCRYPT_R, SCRYPT_P):
        raise ValueError("unknown key encryption")
    key = hashlib.scrypt(passphrase, salt=base64.b64decode(kdf["salt"]), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=32, maxmem=64 << 20)
    try:
        return SecretBox(key).decrypt(base64.b64decode(data["ciphertext"]), base64.b64decode(cipher["nonce"]))
    except CryptoError:
        raise ValueError("wrong passphrase") from None


def read_passphrase(path: str, option: str) -> bytes:
    """The first line of path, as skopeo's --sign-passphrase-file reads it."""
    try:
        with open(path, "rb") as f:
            return f.read().split(b"\n", 1)[0]
    except OSError as e:
        raise ComposerError(f"{option}: {path}: cannot be read ({e.strerror})") from None


class Signer:
    """A private key, decrypted once, in memory."""

    def __init__(self, key_file: str, passphrase_file: str) -> None:
        from cryptography.hazmat.primitives import serialization

        try:
            text = Path(key_file).read_text(errors="replace")
        except OSError as e:
            raise ComposerError(f"--sign-key: {key_file}: cannot be read ({e.strerror})") from None
        block = pem_body(text, PRIVATE_PEM_TYPES)
        if block is None:
            raise ComposerError(f"--sign-key: {key_file}: not a sigstore private key (a PEM block "
                                f"'{PRIVATE_PEM_TYPES[0]}', the .private file of `composer keygen`)")
        passphrase = read_passphrase(passphrase_file, "--sign-passphrase-file")
        try:
            der = decrypt_private_key(block[1], passphrase)
        except ValueError as e:
            reason = "wrong passphrase" if str(e) == "wrong passphrase" else "unreadable key"
            raise ComposerError(f"--sign-key: {key_file}: cannot be decrypted with --sign-passphrase-file "
                                f"({reason})") from None
        except (KeyError, TypeError):
            raise ComposerError(f"--sign-key: {key_file}: unreadable key") from None
        self.key: Any = serialization.load_der_private_key(der, None)

    def sign(self, payload: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return bytes(self.key.sign(payload, ec.ECDSA(hashes.SHA256())))
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return bytes(self.key.sign(payload))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return bytes(self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256()))
        raise ComposerError("--sign-key: unsupported key type (ECDSA, Ed25519 or RSA)")


class Verifier:
    """A public key: which signatures it made."""

    def __init__(self, key_file: str) -> None:
        from cryptography.hazmat.primitives import serialization

        try:
            data = Path(key_file).read_bytes()
        except OSError as e:
            raise ComposerError(f"--verify-key: {key_file}: cannot be read ({e.strerror})") from None
        try:
            self.key: Any = serialization.load_pem_public_key(data)
        except ValueError:
            raise ComposerError(f"--verify-key: {key_file}: not a PEM public key (the .pub file of the pair)") \
                from None

    def verifies(self, payload: bytes, base64_signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        try:
            signature = base64.b64decode(base64_signature, validate=True)
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, payload)
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


def check_key_files(signing: Signing) -> Signing:
    """One clear line for an unusable option, before anything is built (a key is opened
    once here: a wrong passphrase fails now, not after an hour of building); the paths
    made absolute."""
    if signing.sign_key and not signing.passphrase_file:
        raise ComposerError("--sign-key: needs --sign-passphrase-file (the key's passphrase, in a file)")
    if signing.passphrase_file and not signing.sign_key:
        raise ComposerError("--sign-passphrase-file: given without --sign-key")
    if signing.sign_key:
        Signer(signing.sign_key, signing.passphrase_file)
    if signing.verify_key:
        Verifier(signing.verify_key)
    return Signing(*(os.path.abspath(p) if p else "" for p in
                     (signing.sign_key, signing.passphrase_file, signing.verify_key)))
