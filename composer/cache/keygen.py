"""A sigstore key pair for signing cache entries and images (`composer keygen`).

`skopeo generate-sigstore-key` makes one (skopeo >= 1.10); Debian 12's skopeo 1.9.3 signs
and verifies with such keys but cannot make them. Then composer writes the same pair
itself, in the format c/image reads (signature/sigstore/copied.go, loadPrivateKey):
an ECDSA P-256 key, PKCS#8 DER, encrypted as go-tuf's `encrypted` package does (scrypt
N=32768 r=8 p=1 -> 32-byte key; NaCl secretbox with a random 24-byte nonce), as JSON in
a PEM block "ENCRYPTED COSIGN PRIVATE KEY"; the public key a PEM "PUBLIC KEY"."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from composer.cache import signing
from composer.cache.signing import PRIVATE_PEM_TYPES, SCRYPT_N, SCRYPT_P, SCRYPT_R
from composer.errors import CommandError, ComposerError
from composer.runner import Runner

PRIVATE_PEM_TYPE = PRIVATE_PEM_TYPES[0]  # the type every c/image with sigstore (5.21 on) reads


def skopeo_can_generate(runner: Runner) -> bool:
    """skopeo 1.9 answers `generate-sigstore-key --help` with its general help and exit 0:
    the command list says whether it has one."""
    try:
        text = runner.output(["skopeo", "--help"])
    except (CommandError, OSError):
        return False
    return re.search(r"^\s+generate-sigstore-key\s", text, re.MULTILINE) is not None


def encrypt_private_key(der: bytes, passphrase: bytes) -> bytes:
    """go-tuf `encrypted.Encrypt`: the JSON document that is the PEM block's content."""
    from nacl.secret import SecretBox

    salt, nonce = secrets.token_bytes(32), secrets.token_bytes(SecretBox.NONCE_SIZE)
    key = hashlib.scrypt(passphrase, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
                         maxmem=64 << 20)
    sealed = SecretBox(key).encrypt(der, nonce).ciphertext  # tag + ciphertext, as secretbox.Seal
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731  # Go's []byte in JSON
    return json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }).encode()


def pem(kind: str, data: bytes) -> bytes:
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]) + "\n").encode()


def python_key_pair(passphrase: bytes) -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new ECDSA P-256 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem(PRIVATE_PEM_TYPE, encrypt_private_key(der, passphrase)), public


def read_passphrase(path: Path) -> bytes:
    """The first line of path, as skopeo's --passphrase-file reads it; never empty."""
    line = signing.read_passphrase(str(path), "--passphrase-file")
    if not line:
        raise ComposerError(f"--passphrase-file: {path}: its first line is empty",
                            hint="write the passphrase on the first line: a key is never stored unencrypted")
    return line


def generate_key_pair(runner: Runner, prefix: Path, passphrase_file: Path) -> tuple[Path, Path, str]:
    """Write prefix.private (0600) and prefix.pub; returns them and what made them."""
    private, public = Path(f"{prefix}.private"), Path(f"{prefix}.pub")
    for path in (private, public):
        if path.exists():
            raise ComposerError(f"keygen: {path} exists; not overwriting a key", hint="choose another --output-prefix")
    if skopeo_can_generate(runner):
        runner.run(["skopeo", "generate-sigstore-key", "--output-prefix", str(prefix),
                    "--passphrase-file", str(passphrase_file)])
        return private, public, "skopeo generate-sigstore-key"
    private_pem, public_pem = python_key_pair(read_passphrase(passphrase_file))
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public.write_bytes(public_pem)
    return private, public, "composer (skopeo here has no generate-sigstore-key)"
