"""Keys, signatures and the parent-chain rule, with real cryptography (no registry: the
integration tests in tests/integration/test_signing.py push and pull)."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cache.keygen import generate_key_pair
from composer.cache.registry import chain_problem, repository_of
from composer.cache.signing import (
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    Signer,
    Signing,
    Verifier,
    attachment_tag,
    check_key_files,
    payload_document,
    payload_problem,
    read_attachment_dir,
    write_attachment_layout,
)
from composer.errors import ComposerError
from composer.runner import Runner

ROOT = Path(__file__).resolve().parent.parent.parent
DIGEST = "sha256:" + "ab" * 32
REF = "registry.example:5000/team-cache:" + "c" * 64


def pair(folder: Path, name: str, passphrase: str = "a long passphrase") -> tuple[Path, Path, Path]:
    secret = folder / f"{name}.pass"
    secret.write_text(passphrase + "\n")
    private, public, _ = generate_key_pair(Runner(), folder / name, secret)
    return private, public, secret


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {"team": pair(folder, "team"), "other": pair(folder, "other")}


def test_keygen_writes_a_private_encrypted_key_and_a_public_one(keys: dict, tmp_path: Path) -> None:
    private, public, secret = keys["team"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    text = private.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n")
    body = json.loads(base64.b64decode("".join(text.splitlines()[1:-1])))
    assert body["kdf"]["name"] == "scrypt" and body["cipher"]["name"] == "nacl/secretbox"
    assert "a long passphrase" not in text
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(ComposerError, match="exists; not overwriting"):
        generate_key_pair(Runner(), private.with_suffix(""), secret)


def test_a_signature_verifies_with_its_key_only(keys: dict) -> None:
    payload = payload_document(DIGEST, REF, 1700000000)
    signature = base64.b64encode(Signer(str(keys["team"][0]), str(keys["team"][2])).sign(payload)).decode()
    team, other = Verifier(str(keys["team"][1])), Verifier(str(keys["other"][1]))
    assert team.verifies(payload, signature)
    assert not other.verifies(payload, signature)
    assert not team.verifies(payload.replace(b"ab", b"ba", 1), signature)  # another digest
    assert not team.verifies(payload, "not base64!")


def test_the_payload_binds_the_manifest_digest_and_the_reference() -> None:
    payload = payload_document(DIGEST, REF, 1700000000)
    assert json.loads(payload)["critical"] == {"identity": {"docker-reference": REF},
                                               "image": {"docker-manifest-digest": DIGEST},
                                               "type": "cosign container image signature"}
    assert payload_problem(payload, DIGEST, REF) == ""
    assert payload_problem(payload, "sha256:" + "00" * 32, REF).startswith("it signs another manifest")
    other_key_tag = REF[:-64] + "d" * 64
    assert payload_problem(payload, DIGEST, other_key_tag).startswith("it signs another reference")
    assert payload_problem(b"{}", DIGEST, REF) == "its payload is not a signature payload"


def test_the_attachment_is_laid_out_as_the_containers_tools_read_it(tmp_path: Path) -> None:
    payload = payload_document(DIGEST, REF, 1)
    write_attachment_layout(tmp_path / "oci", payload, b"sig-bytes")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" / manifest_hex).read_bytes())
    layer = manifest["layers"][0]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert layer["mediaType"] == PAYLOAD_MEDIA_TYPE
    assert base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]) == b"sig-bytes"
    # What skopeo writes when that manifest is copied to a dir: folder.
    copied = tmp_path / "dir"
    copied.mkdir()
    (copied / "manifest.json").write_text(json.dumps(manifest))
    (copied / layer["digest"].split(":")[1]).write_bytes(payload)
    assert read_attachment_dir(copied) == [(payload, base64.b64encode(b"sig-bytes").decode())]
    assert attachment_tag(DIGEST) == f"sha256-{'ab' * 32}.sig"


def test_a_wrong_passphrase_or_a_missing_one_is_one_clear_line(keys: dict, tmp_path: Path) -> None:
    private, public, _ = keys["team"]
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    with pytest.raises(ComposerError, match="cannot be decrypted with --sign-passphrase-file .wrong passphrase"):
        check_key_files(Signing(str(private), str(wrong)))
    with pytest.raises(ComposerError, match="needs --sign-passphrase-file"):
        check_key_files(Signing(str(private)))
    with pytest.raises(ComposerError, match="not a PEM public key"):
        check_key_files(Signing(verify_key=str(private)))
    with pytest.raises(ComposerError, match="not a sigstore private key"):
        check_key_files(Signing(str(public), str(wrong)))


def test_the_cli_never_shows_the_passphrase(keys: dict, tmp_path: Path) -> None:
    private, _, _ = keys["team"]
    wrong = tmp_path / "wrong"
    wrong.write_text("hunter2-not-it\n")
    result = subprocess.run([sys.executable, "-m", "composer", "build", str(ROOT / "tests/recipes/core-test.toml"),
                             "--sign-key", str(private), "--sign-passphrase-file", str(wrong)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert result.stderr.count("\n") <= 2 and "wrong passphrase" in result.stderr


NOT_ON = "it is not built on the local parent "


@pytest.mark.parametrize(("diff_ids", "below", "problem"), [
    (["a", "b", "c"], ["a", "b"], ""),
    (["x"], [], ""),  # a debootstrap base: one layer on nothing
    (["a", "x", "c"], ["a", "b"], NOT_ON + "(its 3 layers share the first 1 of the parent's 2)"),
    (["a", "c"], ["a", "b", "c"], NOT_ON + "(its 2 layers share the first 1 of the parent's 3)"),
    (["a", "b"], ["a", "b"], NOT_ON + "(its 2 layers share the first 2 of the parent's 2)"),
    (["a", "b", "c", "d"], ["a", "b"], "it has 2 layers of its own over the local parent, not 1"),
])
def test_a_pulled_layer_sits_on_the_local_parent_and_adds_one(diff_ids: list[str], below: list[str],
                                                              problem: str) -> None:
    assert chain_problem(diff_ids, below) == problem


def test_repository_of_a_reference() -> None:
    assert repository_of("127.0.0.1:5000/team/app:1.0") == "127.0.0.1:5000/team/app"
    assert repository_of("127.0.0.1:5000/team/app") == "127.0.0.1:5000/team/app"
