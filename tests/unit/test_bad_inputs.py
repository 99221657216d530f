"""The bad-input corpus (tests/data/bad/cases.toml): `composer check` refuses every case
with one error line naming the file and the field, a non-zero exit and no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from composer.cli import main
from composer.recipe import MAX_TOML_BYTES

BAD = Path(__file__).resolve().parent.parent / "data" / "bad"
CASES: list[dict[str, Any]] = tomllib.loads((BAD / "cases.toml").read_text())["case"]


def make_huge(path: Path) -> None:
    path.write_text('name = "bad"\n' + "# padding\n" * (MAX_TOML_BYTES // 10 + 1))


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def make_symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


# What the test makes at run time, per case's `make`, and where (relative to the case's
# folder): special files git cannot hold, links out of the tree, a file over the limit.
MAKERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "huge": ("", make_huge),
    "fifo": ("", os.mkfifo),
    "fifo-in-module": ("layers/m/files/pipe", os.mkfifo),
    "fifo-module-toml": ("layers/m/module.toml", replace_with_fifo),
    "symlink-out": ("layers/m/files/link", make_symlink("/etc/passwd")),
    "symlink-dir-out": ("layers/m/files/etc", make_symlink("/etc")),
    "symlink-dangling": ("layers/m/files/gone", make_symlink("/nonexistent/composer-test")),
}


def test_the_corpus_is_large_and_every_case_is_complete() -> None:
    assert len(CASES) >= 60
    assert len({case["id"] for case in CASES}) == len(CASES)
    for case in CASES:
        assert case.get("file") and case.get("what"), case["id"]
        assert case.get("make", "") in ("", *MAKERS), case["id"]
        assert case.get("make") or (BAD / case["recipe"]).exists(), case["id"]


def prepare(case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in the corpus itself (check writes nothing there); a case that makes special
    files gets a copy of its own folder instead, at the same relative path."""
    if not case.get("make"):
        monkeypatch.chdir(BAD)
        return
    work = tmp_path / "bad"
    recipe = work / case["recipe"]
    if (BAD / case["recipe"]).parent.parent == BAD / "modules":
        shutil.copytree(BAD / Path(case["recipe"]).parent, recipe.parent)
    recipe.parent.mkdir(parents=True, exist_ok=True)
    where, make = MAKERS[case["make"]]
    make(recipe if not where else recipe.parent / where)
    monkeypatch.chdir(work)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input_is_one_line_naming_file_and_field(case: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    prepare(case, tmp_path, monkeypatch)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:  # any other exception is a traceback
            main(["--cache-dir", str(tmp_path / "cache"), "check", case["recipe"]])
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    out, err = capsys.readouterr()
    assert exit_info.value.code not in (0, None)
    assert out == ""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("composer: error: ")]
    assert len(errors) == 1, err
    assert all(line.startswith(("composer: error: ", "composer: hint: ")) for line in lines), err
    line = errors[0]
    assert f" {case['file']}: " in line, f"file {case['file']!r} not named: {line}"
    # The field right after the file, where every message puts it (a substring anywhere
    # would pass when the file's own name contains it).
    after_file = line.split(f" {case['file']}: ", 1)[1]
    assert case.get("field") or case.get("phrase"), "a case names the field or a phrase"
    if case.get("field"):
        assert after_file.startswith(case["field"]), f"field {case['field']!r} not named after the file: {line}"
    assert case.get("phrase", "") in after_file, f"phrase {case['phrase']!r} not in: {line}"
    assert "Traceback" not in err
