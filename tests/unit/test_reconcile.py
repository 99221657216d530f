"""The pure parts of composer/restack/reconcile.py: three-way merges of the files package managers
share, conflicts, trigger decisions, and the scan of a top-layer folder.

The fixtures under data/reconcile/ were recorded from real trixie builds (see its
README.md): P, modules each built on P, and the linear build of the same modules. A merge
of the modules' files must give the linear build's file, byte for byte."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from composer.commands import Storage
from composer.restack import reconcile
from composer.restack.reconcile import (
    Conflict,
    FileWrite,
    ReconcilePlan,
    ScanCache,
    analyse,
    apply_plan,
    format_alternatives,
    merge_account_file,
    merge_alternatives,
    merge_debconf,
    merge_diversions,
    merge_dpkg_status,
    merge_extended_states,
    merge_line_set,
    merge_log,
    merge_statoverride,
    merge_subids,
    merge_ucf,
    needs_rerun,
    package_owners,
    pacman_conflicts,
    pacman_package,
    parse_activations,
    parse_alternatives,
    parse_file_triggers,
    scan_layer,
)
from composer.runner import Runner

DATA = Path(__file__).parent / "data" / "reconcile"


def read(rel: str) -> bytes:
    return (DATA / rel).read_bytes()


# --- recorded: merge == linear --------------------------------------------------------------


@pytest.mark.parametrize("name", ["passwd", "group", "gshadow"])
def test_accounts_merge_like_the_linear_build(name: str) -> None:
    merged = merge_account_file(f"/etc/{name}", read(f"accounts/parent.{name}"),
                                [("ssh", read(f"accounts/ssh.{name}")), ("users", read(f"accounts/users.{name}"))])
    assert merged == read(f"accounts/linear.{name}")


def test_group_members_added_by_two_modules_are_united() -> None:
    parent = b"adm:x:4:\nusers:x:100:\n"
    merged = merge_account_file("/etc/group", parent, [("a", b"adm:x:4:alice\nusers:x:100:\n"),
                                                      ("b", b"adm:x:4:bob\nusers:x:100:\n")])
    assert merged == b"adm:x:4:alice,bob\nusers:x:100:\n"


def test_recorded_gid_collision_is_a_conflict() -> None:
    # On a plain debootstrap P, openssh-server's _ssh and dbus's messagebus both take gid 101.
    result = merge_account_file("/etc/group", read("collision/parent.group"),
                                [("ssh", read("collision/ssh.group")), ("dbus", read("collision/dbus.group"))])
    assert result == Conflict("/etc/group", ("ssh", "dbus"), "gid 101 given to _ssh and messagebus")


def test_one_account_changed_two_ways_is_a_conflict() -> None:
    parent = b"root:x:0:0:root:/root:/bin/bash\n"
    result = merge_account_file("/etc/passwd", parent, [("a", b"root:x:0:0:root:/root:/bin/zsh\n"),
                                                       ("b", b"root:x:0:0:root:/root:/bin/fish\n")])
    assert isinstance(result, Conflict) and result.modules == ("a", "b")


def test_dpkg_status_merges_like_the_linear_build() -> None:
    merged = merge_dpkg_status("/var/lib/dpkg/status", read("status/parent"),
                               [(m, read(f"status/{m}")) for m in ("tools", "nano", "vim")])
    assert merged == read("status/linear")


def test_a_package_at_two_versions_is_a_conflict() -> None:
    nano = read("status/nano")
    other = nano.replace(b"Version: 8.4-1+deb13u1", b"Version: 8.5-1")
    assert other != nano
    result = merge_dpkg_status("/var/lib/dpkg/status", read("status/parent"), [("a", nano), ("b", other)])
    assert isinstance(result, Conflict)
    assert "package nano:amd64 at two versions" in result.reason and "8.5-1" in result.reason


def test_the_same_package_installed_by_two_modules_is_fine() -> None:
    nano = read("status/nano")
    assert merge_dpkg_status("/var/lib/dpkg/status", read("status/parent"), [("a", nano), ("b", nano)]) == nano


def test_extended_states_merge_like_the_linear_build() -> None:
    merged = merge_extended_states("/var/lib/apt/extended_states", None,
                                   [(m, read(f"extended_states/{m}")) for m in ("ssh", "tools", "nano", "vim")])
    assert merged == read("extended_states/linear")


def test_debconf_merges_like_the_linear_build() -> None:
    merged = merge_debconf("/var/cache/debconf/config.dat", read("debconf/parent"),
                           [("ssh", read("debconf/ssh")), ("dbus", read("debconf/dbus"))])
    assert merged == read("debconf/linear")


def test_debconf_owners_are_united_and_other_fields_must_agree() -> None:
    a = b"Name: shared/q\nTemplate: shared/q\nOwners: pkg-a\n\n"
    b = b"Name: shared/q\nTemplate: shared/q\nOwners: pkg-b\n\n"
    assert merge_debconf("/x", None, [("a", a), ("b", b)]) == \
        b"Name: shared/q\nTemplate: shared/q\nOwners: pkg-a, pkg-b\n\n"
    c = b"Name: shared/q\nTemplate: shared/q\nValue: yes\nOwners: pkg-b\n\n"
    assert isinstance(merge_debconf("/x", None, [("a", a), ("c", c)]), Conflict)


def test_trigger_interests_merge_like_the_linear_build() -> None:
    merged = merge_line_set("/var/lib/dpkg/triggers/File", read("triggers/parent.File"),
                            [("ssh", read("triggers/ssh.File")), ("dbus", read("triggers/dbus.File"))])
    assert merged == read("triggers/linear.File")


def test_alternatives_merge_like_the_linear_build() -> None:
    merged = merge_alternatives("/var/lib/dpkg/alternatives/editor", None,
                                [("nano", read("alternatives/nano.editor")), ("vim", read("alternatives/vim.editor"))])
    assert merged == read("alternatives/linear.editor")


def test_alternatives_parse_and_format_round_trip() -> None:
    text = read("alternatives/linear.editor")
    group = parse_alternatives(text.decode())
    assert group.mode == "auto" and group.link == "/usr/bin/editor"
    assert [c[:2] for c in group.choices] == [("/bin/nano", "40"), ("/usr/bin/vim.tiny", "15")]
    assert format_alternatives(group) == text


def test_alternatives_in_manual_mode_are_a_conflict() -> None:
    manual = read("alternatives/vim.editor").replace(b"auto\n", b"manual\n", 1)
    result = merge_alternatives("/var/lib/dpkg/alternatives/editor", None,
                                [("nano", read("alternatives/nano.editor")), ("vim", manual)])
    assert result == Conflict("/var/lib/dpkg/alternatives/editor", ("vim",), "alternatives group in manual mode")


# --- small line formats ----------------------------------------------------------------------


def test_shells_union_in_stack_order() -> None:
    parent = b"/bin/sh\n/bin/bash\n"
    merged = merge_line_set("/etc/shells", parent, [("tmux", parent + b"/usr/bin/tmux\n"),
                                                   ("zsh", parent + b"/bin/zsh\n")])
    assert merged == b"/bin/sh\n/bin/bash\n/usr/bin/tmux\n/bin/zsh\n"


def test_statoverride_one_path_two_modes_is_a_conflict() -> None:
    a = b"root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n"
    b = b"root messagebus 4755 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n"
    c = b"root crontab 2755 /usr/bin/crontab\n"
    assert merge_statoverride("/var/lib/dpkg/statoverride", None, [("a", a), ("c", c)]) == a + c
    assert isinstance(merge_statoverride("/var/lib/dpkg/statoverride", None, [("a", a), ("b", b)]), Conflict)


def test_ucf_keys_by_path() -> None:
    a = b"d41d8cd98f00b204e9800998ecf8427e  /etc/ssh/sshd_config\n"
    b = b"0cc175b9c0f1b6a831c399e269772661  /etc/other.conf\n"
    assert merge_ucf("/var/lib/ucf/hashfile", None, [("a", a), ("b", b)]) == a + b


def test_diversions_are_records_of_three_lines() -> None:
    parent = b"/bin/sh\n/bin/sh.distrib\ndash\n"
    mine = parent + b"/usr/bin/x\n/usr/bin/x.real\npkg\n"
    assert merge_diversions("/var/lib/dpkg/diversions", parent, [("a", mine), ("b", parent)]) == mine


def test_subids_must_not_overlap() -> None:
    a = b"alice:100000:65536\n"
    b = b"bob:100000:65536\n"
    c = b"carol:165536:65536\n"
    assert merge_subids("/etc/subuid", None, [("a", a), ("c", c)]) == a + c
    result = merge_subids("/etc/subuid", None, [("a", a), ("b", b)])
    assert isinstance(result, Conflict) and "overlap" in result.reason


def test_logs_append_what_each_module_added() -> None:
    parent = b"one\n"
    assert merge_log("/var/log/x.log", parent, [("a", parent + b"a\n"), ("b", parent + b"b\n")]) == b"one\na\nb\n"


def test_deleting_a_shared_file_another_module_changes_is_a_conflict() -> None:
    parent = b"/bin/sh\n"
    result = merge_line_set("/etc/shells", parent, [("a", None), ("b", parent + b"/bin/zsh\n")])
    assert result == Conflict("/etc/shells", ("a", "b"), "deleted by one module, changed by another")


# --- triggers ----------------------------------------------------------------------------------


def test_parse_trigger_files() -> None:
    interests = parse_file_triggers(read("triggers/linear.File").decode())
    assert interests["/usr/share/dbus-1/system-services"] == {"dbus"}
    assert interests["/usr/lib/sysctl.d"] == {"systemd", "procps"}
    assert parse_activations("interest-noawait /x\nactivate-noawait ldconfig\nactivate update-foo\n") == \
        {"ldconfig", "update-foo"}


def test_package_owners() -> None:
    owners = package_owners(read("status/parent"), [(0, read("status/tools")), (1, read("status/nano"))])
    assert owners["apt"] == {-1} and owners["jq"] == {0} and owners["nano"] == {1}


@pytest.mark.parametrize(("owners", "activators", "rerun"), [
    ({-1}, set(), False),     # nobody set it off
    ({-1}, {0}, False),       # P's package, one module: it ran in that module's build
    ({-1}, {0, 1}, True),     # two modules: each saw only its own files
    ({1}, {1}, False),        # the module that installed the package set it off itself
    ({1}, {0}, True),         # systemd (module 0) writes where dbus (module 1) listens
])
def test_needs_rerun(owners: set[int], activators: set[int], rerun: bool) -> None:
    assert needs_rerun(owners, activators) is rerun


# --- scanning top layers and analyse() on small synthetic layers ------------------------------


def whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o600 | 0o020000, os.makedev(0, 0))


needs_root = pytest.mark.needs(root=True, why="whiteouts are character devices: mknod needs root")


def layer(root: Path, files: dict[str, bytes | None]) -> Path:
    """A top-layer folder: bytes are files, None a whiteout."""
    for rel, data in files.items():
        path = root / rel.lstrip("/")
        if data is None:
            whiteout(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return root


@needs_root
def test_scan_layer_sees_whiteouts_and_opaque_folders(tmp_path: Path) -> None:
    root = layer(tmp_path / "a", {"/etc/gone": None, "/etc/new": b"x"})
    (root / "opt/replaced").mkdir(parents=True)
    os.setxattr(root / "opt/replaced", "trusted.overlay.opaque", b"y")
    entries = scan_layer(root)
    assert entries["/etc/gone"].kind == "whiteout"
    assert entries["/etc/new"].kind == "file"
    assert entries["/opt/replaced"].opaque and not entries["/etc"].opaque


@needs_root
def test_analyse_reports_each_kind_of_conflict(tmp_path: Path) -> None:
    parent = layer(tmp_path / "p", {"/etc/issue": b"Debian\n", "/etc/group": b"root:x:0:\n"})
    a = layer(tmp_path / "a", {"/etc/foo": b"one\n", "/etc/issue": None,
                               "/etc/group": b"root:x:0:\nalpha:x:999:\n"})
    b = layer(tmp_path / "b", {"/etc/foo": b"two\n", "/etc/issue": b"Debian changed\n",
                               "/etc/group": b"root:x:0:\nbeta:x:999:\n"})
    analysis = analyse(parent, [("a", a), ("b", b)])
    found = {c.path: c for c in analysis.conflicts}
    assert found["/etc/foo"] == Conflict("/etc/foo", ("a", "b"), "same path, different content")
    assert found["/etc/issue"].modules == ("a", "b") and "deletes" in found["/etc/issue"].reason
    assert found["/etc/group"].reason == "gid 999 given to alpha and beta"


reconcile_scan = scan_layer  # the real walk, whatever a test patches in its place


def overlay_layer(storage: Path, layer_id: str, files: dict[str, bytes | None]) -> Path:
    """A layer as overlay stores it: <graph root>/overlay/<layer ID>/diff."""
    return layer(storage / "overlay" / layer_id / "diff", files)


def test_a_layer_is_walked_once_then_its_scan_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "storage"
    parent = layer(tmp_path / "p", {"/etc/shells": b"/bin/sh\n"})
    a = overlay_layer(storage, "1" * 64, {"/etc/shells": b"/bin/sh\n/bin/a\n", "/opt/a/tool": b"a"})
    b = overlay_layer(storage, "2" * 64, {"/etc/shells": b"/bin/sh\n/bin/b\n", "/usr/bin/b": b"b"})
    os.symlink("tool", a / "opt/a/link")
    (b / "usr/bin/b").chmod(0o4755)
    scans = ScanCache(tmp_path / "cache", storage / "overlay")
    plain = analyse(parent, [("a", a), ("b", b)])  # no cache: both walked, as before
    walked: list[Path] = []

    def counting(root: Path) -> dict[str, reconcile.Entry]:
        walked.append(root)
        return reconcile_scan(root)

    monkeypatch.setattr(reconcile, "scan_layer", counting)
    first = analyse(parent, [("a", a), ("b", b)], scans=scans)
    assert walked == [a, b]
    # Read back: the same entries, modes, owners and link targets, and the same analysis.
    again = analyse(parent, [("a", a), ("b", b)], scans=scans)
    assert walked == [a, b] and again == first == plain and plain.writes
    assert scans.scan(b) == reconcile_scan(b) and scans.scan(b)["/usr/bin/b"].mode == 0o4755
    assert scans.scan(a)["/opt/a/link"].target == "tool" and walked == [a, b]
    # A layer committed anew (even under the same module key) is a new folder: walked.
    c = overlay_layer(storage, "3" * 64, {"/etc/shells": b"/bin/sh\n/bin/c\n"})
    analyse(parent, [("a", a), ("c", c)], scans=scans)
    assert walked == [a, b, c]
    # A damaged scan is walked again; the storage's removed layers lose theirs.
    (scans.folder / f"{'1' * 64}.json").write_text("{not json")
    assert scans.scan(a) == reconcile_scan(a) and walked[-1] == a
    shutil.rmtree(storage / "overlay" / ("2" * 64))
    scans.sweep()
    assert sorted(f.stem for f in scans.folder.glob("*.json")) == ["1" * 64, "3" * 64]
    # Another storage's scans live apart: its sweep leaves these alone.
    other = ScanCache(tmp_path / "cache", tmp_path / "other" / "overlay")
    (tmp_path / "other" / "overlay").mkdir(parents=True)
    other.sweep()
    assert other.folder != scans.folder and len(list(scans.folder.glob("*.json"))) == 2


def test_a_file_two_layers_share_is_hashed_once_per_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "storage"
    parent = layer(tmp_path / "p", {"/etc/shells": b"/bin/sh\n"})
    a = overlay_layer(storage, "1" * 64, {"/usr/lib/libx.so": b"x" * 5000})
    b = overlay_layer(storage, "2" * 64, {"/usr/lib/libx.so": b"x" * 5000})
    c = overlay_layer(storage, "3" * 64, {"/usr/lib/libx.so": b"y" * 5000})  # same size, other content
    hashed: list[Path] = []
    real = reconcile._digest

    def counting(root: Path, path: str) -> str:
        hashed.append(root)
        return real(root, path)

    monkeypatch.setattr(reconcile, "_digest", counting)
    scans = ScanCache(tmp_path / "cache", storage / "overlay")
    assert analyse(parent, [("a", a), ("b", b)], scans=scans).conflicts == ()
    assert hashed == [a, b]
    # Read back by the next reconcile (a new cache object: another build), nothing hashed.
    assert analyse(parent, [("a", a), ("b", b)], scans=ScanCache(tmp_path / "cache", storage / "overlay")).ok
    assert hashed == [a, b]
    # A new layer with other content is hashed alone, and still conflicts.
    clash = analyse(parent, [("a", a), ("c", c)], scans=ScanCache(tmp_path / "cache", storage / "overlay"))
    assert [(x.path, x.reason) for x in clash.conflicts] == [("/usr/lib/libx.so", "same path, different content")]
    assert hashed == [a, b, c]
    # Without the cache the same answers (no cache: every file hashed each time).
    assert analyse(parent, [("a", a), ("c", c)]).conflicts == clash.conflicts
    # The storage's removed layers lose their digests with their scans.
    shutil.rmtree(storage / "overlay" / ("2" * 64))
    scans.sweep()
    assert sorted(f.name for f in scans.folder.glob("*.json")) == [
        f"{'1' * 64}.digests.json", f"{'1' * 64}.json", f"{'3' * 64}.digests.json", f"{'3' * 64}.json"]


def test_analyse_merges_and_leaves_identical_files_alone(tmp_path: Path) -> None:
    parent = layer(tmp_path / "p", {"/etc/shells": b"/bin/sh\n"})
    a = layer(tmp_path / "a", {"/etc/shells": b"/bin/sh\n/bin/a\n", "/usr/share/doc/x": b"same"})
    b = layer(tmp_path / "b", {"/etc/shells": b"/bin/sh\n/bin/b\n", "/usr/share/doc/x": b"same",
                               "/etc/machine-id": b"random"})
    analysis = analyse(parent, [("a", a), ("b", b)])
    assert analysis.ok
    assert [(w.path, w.content) for w in analysis.writes] == [("/etc/shells", b"/bin/sh\n/bin/a\n/bin/b\n")]
    assert analysis.commands == ()


# --- Arch ---------------------------------------------------------------------------------------


def test_pacman_package_folders() -> None:
    assert pacman_package("/var/lib/pacman/local/lib32-glibc-2.41+r9-1") == ("lib32-glibc", "2.41+r9-1")
    assert pacman_package("/var/lib/pacman/local/ALPM_DB_VERSION") is None
    assert pacman_package("/var/lib/pacman/local/jq-1.7.1-2/desc") is None


def test_pacman_one_package_at_two_versions_is_a_conflict() -> None:
    a = ("a", ["/var/lib/pacman/local/jq-1.7.1-2", "/var/lib/pacman/local/oniguruma-6.9.9-1"])
    b = ("b", ["/var/lib/pacman/local/oniguruma-6.9.9-1", "/var/lib/pacman/local/tmux-3.5_a-1"])
    c = ("c", ["/var/lib/pacman/local/jq-1.8.0-1"])
    assert pacman_conflicts([a, b]) == []
    assert pacman_conflicts([a, b, c]) == [
        Conflict("/var/lib/pacman/local/jq", ("a", "c"), "package jq at two versions: 1.7.1-2 vs 1.8.0-1")]


def test_arch_accounts_merge_the_same_way() -> None:
    parent = b"root:x:0:0::/root:/bin/bash\n"
    merged = merge_account_file("/etc/passwd", parent, [
        ("a", parent + b"git:x:971:971:git daemon user:/:/usr/bin/git-shell\n"),
        ("b", parent + b"polkitd:x:102:102:User for polkitd:/:/usr/bin/nologin\n")])
    assert merged == parent + b"git:x:971:971:git daemon user:/:/usr/bin/git-shell\n" \
        b"polkitd:x:102:102:User for polkitd:/:/usr/bin/nologin\n"


def test_analyse_reruns_a_trigger_two_modules_set_off(tmp_path: Path) -> None:
    parent = layer(tmp_path / "p", {
        "/var/lib/dpkg/triggers/File": b"/usr/share/foo pkg-p/noawait\n",
        "/var/lib/dpkg/status": b"Package: pkg-p\nStatus: install ok installed\nArchitecture: all\n\n"})
    a = layer(tmp_path / "a", {"/usr/share/foo/a": b"a"})
    b = layer(tmp_path / "b", {"/usr/share/foo/b": b"b"})
    c = layer(tmp_path / "c", {"/usr/share/bar/c": b"c"})
    assert analyse(parent, [("a", a), ("c", c)]).triggers == ()
    analysis = analyse(parent, [("a", a), ("b", b), ("c", c)])
    assert analysis.triggers == ("/usr/share/foo",)
    assert analysis.commands == (("dpkg-trigger", "--no-await", "/usr/share/foo"),
                                 ("dpkg", "--triggers-only", "--pending"))


def test_alternatives_add_to_a_group_the_parent_has() -> None:
    parent = b"auto\n/usr/bin/pager\npager.1.gz\n/usr/share/man/man1/pager.1.gz\n\n" \
        b"/bin/more\n50\n/usr/share/man/man1/more.1.gz\n\n"
    a = parent.replace(b"\n\n", b"\n\n/usr/bin/less\n77\n/usr/share/man/man1/less.1.gz\n", 1)
    b = parent.replace(b"\n\n", b"\n\n/usr/bin/most\n60\n\n", 1)
    merged = merge_alternatives("/var/lib/dpkg/alternatives/pager", parent, [("a", a), ("b", b)])
    assert isinstance(merged, bytes)
    group = parse_alternatives(merged.decode())
    assert [(p, prio) for p, prio, _ in group.choices] == [
        ("/bin/more", "50"), ("/usr/bin/less", "77"), ("/usr/bin/most", "60")]
    assert group.choices[2][2] == ("",)  # most has no man page slave


# --- apply_plan: one buildah run of one script ----------------------------------------------


class ScriptRunner(Runner):
    """Records each argv and what it was given on standard input."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], bytes | None]] = []

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, stream: bool = False,
            input: bytes | None = None) -> str:
        self.calls.append(([str(a) for a in argv], input))
        return ""


def test_apply_plan_writes_runs_and_deletes_in_one_buildah_run() -> None:
    plan = ReconcilePlan(
        writes=(FileWrite("/etc/group", b"root:x:0:\nalpha:x:999:\n", 0o644, 0, 0),
                FileWrite("/etc/shadow", b"root:*:1::::::\n", 0o640, 0, 42)),
        commands=(("ldconfig",), ("update-alternatives", "--auto", "editor"), ("dpkg-trigger", "--no-await", "a b")),
        deletes=("/var/log/dpkg.log", "/var/cache/ldconfig/aux-cache"),
    )
    runner = ScriptRunner()
    apply_plan(runner, Storage(root="/s"), "ctr", plan)
    ((call, given),) = runner.calls
    assert call[:2] == ["buildah", "--root"] and "run" in call and "--volume" not in call  # nothing mounted
    assert call[call.index("--") + 1:][:2] == ["/bin/sh", "-c"]
    assert call[call.index("--") + 3].splitlines() == [
        "set -ex",
        "tar -x -p --numeric-owner -f - -C /",
        "exec </dev/null",
        "ldconfig", "update-alternatives --auto editor", "dpkg-trigger --no-await 'a b'",
        "rm -rf -- /var/log/dpkg.log /var/cache/ldconfig/aux-cache"]
    # The files, on the script's standard input: paths, modes, owners and content as planned.
    assert given is not None
    with tarfile.open(fileobj=io.BytesIO(given)) as tar:
        members = tar.getmembers()
        assert [(m.name, m.mode, m.uid, m.gid, m.isfile()) for m in members] == [
            ("etc/group", 0o644, 0, 0, True), ("etc/shadow", 0o640, 0, 42, True)]
        assert [tar.extractfile(m).read() for m in members] == [w.content for w in plan.writes]  # type: ignore[union-attr]
    # Nothing planned: nothing run.
    empty = ScriptRunner()
    apply_plan(empty, Storage(root="/s"), "ctr", ReconcilePlan((), (), ()))
    assert empty.calls == []
