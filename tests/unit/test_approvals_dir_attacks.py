"""A bundle the agent's traffic took over turns the approvals store against the person.

The approvals live in the bottle's state dir, which is mounted read-write into the bundle, and
the person's `bottle-engine approve` (often as root) writes there. Each attack below is what
the bundle can do in its own dir: put a symbolic link, a FIFO or a huge file where the store
expects its own files. The person's answer must never write, chmod, chown or hang on what the
link names; a host file stands in for `~/.bashrc` (an appended JSON line whose agent-written
text holds `$(...)` runs in the person's next shell).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bottle_engine import config_seal, state
from bottle_engine.approvals import (
    APPROVALS_DIR_NAME,
    AUDIT_LOG,
    MAX_APPROVALS_DIR_ENTRIES,
    MAX_OPEN_REQUEST_FILES,
    ApprovalLimits,
    ApprovalRequest,
    ApprovalsFlooded,
    ApprovalStore,
)
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.cli import main
from bottle_engine.errors import BottleError
from bottle_lsp.engine import Engine
from tests.conftest import REPO_ROOT

SHELL_RC = "# the person's shell start-up file\n"
PAYLOAD = "$(touch /tmp/bot-bottle-pwned)"
NOBODY = 65534


def _pending_request(slug: str = "hostile") -> str:
    return ApprovalStore(state.bottle_dir(slug), slug).open_request(PAYLOAD, "why", 3600).id


def _host_file(tmp_path: Path) -> Path:
    target = tmp_path / "host" / ".bashrc"
    target.parent.mkdir()
    target.write_text(SHELL_RC)
    target.chmod(0o644)
    return target


def _approve(request_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The person approves the request `_pending_request` opened, as they read it."""
    read = ApprovalRequest(request_id, "hostile", PAYLOAD, "why", "pending", "", "")
    code = main(["approve", request_id, "--bottle", "hostile", "--fingerprint", read.fingerprint])
    return code, capsys.readouterr().err


def test_a_linked_audit_log_gets_no_line_from_the_persons_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request_id = _pending_request()
    target = _host_file(tmp_path)
    log = state.bottle_dir("hostile") / AUDIT_LOG
    log.unlink()
    log.symlink_to(target)

    code, err = _approve(request_id, capsys)

    assert target.read_text() == SHELL_RC, "the person's answer wrote into the linked file"
    assert code == 1
    assert AUDIT_LOG in err and "symbolic link" in err
    store = ApprovalStore(state.bottle_dir("hostile"), "hostile")
    assert store.get(request_id).pending  # type: ignore[union-attr]  # refused as a whole


def test_a_linked_lock_file_is_neither_chmodded_nor_given_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request_id = _pending_request()
    target = _host_file(tmp_path)
    before = target.stat()
    lock = state.bottle_dir("hostile") / APPROVALS_DIR_NAME / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)

    code, err = _approve(request_id, capsys)

    after = target.stat()
    assert stat.S_IMODE(after.st_mode) == 0o644, "the answer chmodded the linked file"
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert code == 1
    assert ".lock" in err and "symbolic link" in err


def test_a_linked_approvals_dir_gets_no_file_from_the_persons_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dir itself replaced by a link to a host dir holding a copy of the request."""
    request_id = _pending_request()
    bottle = state.bottle_dir("hostile")
    host_dir = tmp_path / "host-dir"
    (bottle / APPROVALS_DIR_NAME).rename(host_dir)
    (bottle / APPROVALS_DIR_NAME).symlink_to(host_dir)
    before = sorted(p.name for p in host_dir.iterdir())

    code, _ = _approve(request_id, capsys)

    assert sorted(p.name for p in host_dir.iterdir()) == before
    assert code == 1


def test_a_fifo_in_place_of_a_request_does_not_hang_the_listing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    request_id = _pending_request()
    approvals = state.bottle_dir("hostile") / APPROVALS_DIR_NAME
    os.mkfifo(approvals / "0badf1f0.json")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(main(["approvals", "hostile"])))
    worker.daemon = True  # an old reader blocks in open() for ever
    worker.start()
    worker.join(timeout=30)
    assert done == [0], "`approvals` hung on a FIFO planted in the approvals dir"
    assert request_id in capsys.readouterr().out


def test_a_huge_request_file_is_skipped_not_read_whole() -> None:
    """A sparse 4 GiB file among the requests: the listing, in a process allowed 1 GiB of
    address space, still lists the real request (a whole read dies of MemoryError)."""
    request_id = _pending_request()
    approvals = state.bottle_dir("hostile") / APPROVALS_DIR_NAME
    with (approvals / "0badf1f1.json").open("wb") as sparse:
        sparse.truncate(4 * 1024**3)

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))

    done = subprocess.run(
        [sys.executable, "-m", "bottle_engine", "approvals", "hostile"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        timeout=120,
        preexec_fn=bounded,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert request_id in done.stdout.decode()


def test_a_deeply_nested_request_file_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON nested past the parser's recursion depth is a RecursionError, not a ValueError: one
    such file among the requests broke the person's whole listing."""
    request_id = _pending_request()
    approvals = state.bottle_dir("hostile") / APPROVALS_DIR_NAME
    (approvals / "0badf1f2.json").write_text("[" * 5_000 + "]" * 5_000)

    assert main(["approvals", "hostile"]) == 0
    assert request_id in capsys.readouterr().out


def _planted_request(bottle: str, name: str, **fields: object) -> None:
    """A request file written by bottle `bottle`'s bundle itself, as it likes."""
    request = {
        "id": name,
        "slug": bottle,
        "action": "deploy",
        "reason": "why",
        "status": "pending",
        "created_at": "2020-01-01T00:00:00+00:00",
        "expires_at": "2999-01-01T00:00:00+00:00",
        **fields,
    }
    approvals = state.bottle_dir(bottle) / APPROVALS_DIR_NAME
    approvals.mkdir(parents=True, exist_ok=True)
    (approvals / f"{name}.json").write_text(json.dumps(request))


@pytest.mark.parametrize(
    "damage",
    [
        {"expires_at": "not a time"},
        {"created_at": "2020-01-01T00:00:00"},  # no time zone: not comparable with now
        {"expires_at": "2999-01-01T00:00:00"},
        {"created_at": 7},
        {"action": ["a", "list"]},
        {"port": float("nan"), "kind": "egress"},
    ],
    ids=["bad-expiry", "naive-created", "naive-expiry", "number", "list-action", "nan-port"],
)
def test_a_damaged_request_does_not_hide_another_bottles_requests(
    damage: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """One bottle's bundle writes a request whose fields the listing cannot use: the person's
    `approvals` (and the editor's poller, which lists the same way) must still show every
    other bottle's requests, not fail as a whole."""
    request_id = _pending_request("honest")
    _planted_request("hostile", "0badf1f3", **damage)

    assert main(["approvals"]) == 0
    assert request_id in capsys.readouterr().out
    assert main(["approvals", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [request["id"] for request in listed] == [request_id]


def test_a_request_is_listed_under_the_bottle_whose_dir_holds_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bundle writes a request naming another bottle (or another id) than its own: the
    person reads and answers it as the bottle the file came from, never the one it names."""
    _pending_request("trusted")
    _planted_request("hostile", "0badf1f4", slug="trusted", action="push to production")
    _planted_request("hostile", "0badf1f5", id="0badf1f6", slug="trusted")

    assert main(["approvals", "--json"]) == 0
    listing = capsys.readouterr().out
    listed = {r["id"]: r["slug"] for r in json.loads(listing)}
    assert listed.get("0badf1f4") == "hostile"
    assert "0badf1f6" not in listed and "0badf1f5" not in listed

    read = next(r for r in json.loads(listing) if r["id"] == "0badf1f4")
    assert main(["approve", "0badf1f4", "--json", "--fingerprint", read["fingerprint"]]) == 0
    assert json.loads(capsys.readouterr().out)["slug"] == "hostile"
    assert not config_seal.answers_path("trusted").exists(), "vouched for the wrong bottle"


def _as_the_bundles_own_user(run: Callable[[], int]) -> int:
    """`run()`'s result in a child that is an engine not running as root (whose bundle runs as
    its own user, and so can take the engine's rights to its dir); from root, as `nobody`."""
    if os.geteuid() != 0:
        return run()
    run()  # everything it imports is loaded before the child drops the rights to load more
    root = state.state_dir()
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY, follow_symlinks=False)
    os.chown(root, NOBODY, NOBODY)
    child = os.fork()
    if child == 0:
        code = 3
        try:
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
            code = run()
        except BaseException as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def state_nobody_reaches(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state dir that `nobody` (`_as_the_bundles_own_user` from root) can reach."""
    shared = tmp_path_factory.mktemp("state-others-enter")
    for directory in (shared, *shared.parents):
        if directory.stat().st_uid == 0 and not directory.stat().st_mode & 0o001:
            directory.chmod(directory.stat().st_mode | 0o001)
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(shared / "state"))


@pytest.mark.usefixtures("state_nobody_reaches")
def test_an_approvals_dir_closed_to_its_owner_does_not_hide_another_bottles_requests(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """With the engine not running as root, the bundle is the engine's user and can chmod 000
    its approvals dir: the person's listing of every bottle failed on it (PermissionError)."""
    request_id = _pending_request("honest")
    _pending_request("hostile")
    (state.bottle_dir("hostile") / APPROVALS_DIR_NAME).chmod(0)

    code = _as_the_bundles_own_user(lambda: main(["approvals", "--json"]))

    assert code == 0, capfd.readouterr().err[-2000:]
    listed = capfd.readouterr().out.split("]")[-2]  # the child's listing: the last one printed
    assert request_id in listed


@pytest.mark.usefixtures("state_nobody_reaches")
def test_resume_on_an_approvals_dir_closed_to_its_owner_says_what_to_do(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`resume` drops the approvals no person gave; on a dir its bundle closed (chmod 000) it
    stopped with a PermissionError traceback, not a sentence naming the bottle and the way on."""
    _pending_request("hostile")
    (state.bottle_dir("hostile") / APPROVALS_DIR_NAME).chmod(0)

    def drop() -> int:
        try:
            config_seal.drop_unvouched_approvals("hostile", BottleDir.of("hostile"))
        except BottleError as exc:
            print(f"{exc} / {exc.fix}", file=sys.stderr, flush=True)
            return 0
        return 1

    code = _as_the_bundles_own_user(drop)

    said = capfd.readouterr().err
    assert code == 0, said[-2000:]
    assert "approvals dir" in said and "bottle-engine stop --rm hostile" in said


@contextlib.contextmanager
def _files_read() -> Iterator[list[str]]:
    """The names of the approval files the store reads meanwhile."""
    read: list[str] = []
    real_read = ApprovalStore._read_file

    def counted(store: ApprovalStore, name: str) -> bytes:
        read.append(name)
        return real_read(store, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ApprovalStore, "_read_file", counted)
        yield read


def test_a_dir_flooded_with_request_files_is_reported_not_read_or_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A taken-over bundle runs none of the store's caps and writes request files by the
    thousand: the person's `approvals` listed every one (20,000 pending: 95 MiB and 4 s per
    listing, which the editor repeats every 2 s, and one notification each). The host reads
    no more files than a bundle keeps, names the bottle, and still lists the others."""
    honest = _pending_request("honest")
    for number in range(MAX_OPEN_REQUEST_FILES + 1):
        _planted_request("hostile", f"{number:08x}")
    with _files_read() as read:
        assert main(["approvals", "--json"]) == 0
    captured = capsys.readouterr()
    assert [request["id"] for request in json.loads(captured.out)] == [honest]
    assert len(read) <= 1, "the flooded dir's files were read"
    assert "hostile" in captured.err and "taken over" in captured.err

    assert [request.slug for request in Engine().pending_approvals()] == ["honest"]


@contextlib.contextmanager
def _entries_scanned() -> Iterator[list[str]]:
    """The names `os.scandir` hands out meanwhile, as the reader takes them."""
    scanned: list[str] = []
    real_scandir = os.scandir

    def noted(entries: Iterator[os.DirEntry[str]]) -> Iterator[os.DirEntry[str]]:
        for entry in entries:
            scanned.append(entry.name)
            yield entry

    @contextlib.contextmanager
    def counted(directory: int) -> Iterator[Iterator[os.DirEntry[str]]]:
        with real_scandir(directory) as entries:
            yield noted(entries)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "scandir", counted)
        yield scanned


def test_a_dir_flooded_with_other_names_is_reported_not_walked() -> None:
    """The host's bound counted request files only: a taken-over bundle that filled its dir
    with other names made every listing (the editor's, every 2 s; `approvals`; `resume`) walk
    them all, and still read the request among them. Every entry counts."""
    approvals = state.bottle_dir("hostile") / APPROVALS_DIR_NAME
    approvals.mkdir(parents=True)
    for number in range(2 * MAX_APPROVALS_DIR_ENTRIES):
        (approvals / f"junk-{number}").touch()
    _planted_request("hostile", "0000beef")
    store = ApprovalStore(state.bottle_dir("hostile"), "hostile")

    with _entries_scanned() as scanned, pytest.raises(ApprovalsFlooded) as flooded:
        store.all()

    assert len(scanned) <= MAX_APPROVALS_DIR_ENTRIES + 1, "the flooded dir was walked"
    assert f"more than {MAX_APPROVALS_DIR_ENTRIES} entries" in str(flooded.value)
    assert "taken over" in str(flooded.value.fix)


def test_a_request_rewritten_after_the_editor_showed_it_is_not_answered() -> None:
    """The editor shows a request and waits for the person's click; meanwhile the bundle
    rewrites the file under the same id. The click approved, and vouched for (so a `resume`
    keeps it for the fresh bundle), a question the person never read, and the audit log says
    they approved it."""
    honest = ApprovalStore(state.bottle_dir("hostile"), "hostile").open_request(
        "run the test suite", "to check my change", 3600
    )
    [shown] = Engine().pending_approvals()
    assert "run the test suite" in shown.summary
    _planted_request(
        "hostile",
        honest.id,
        action="git push --force origin main",
        created_at=honest.created_at,
        expires_at=honest.expires_at,
    )

    with pytest.raises(BottleError, match="no longer asks what was read"):
        Engine().answer_approval(shown, True, "answered in the editor")
    still = ApprovalStore(state.bottle_dir("hostile"), "hostile").get(honest.id)
    assert still is not None and still.pending
    assert not config_seal.answers_path("hostile").exists()


def test_resume_refuses_a_dir_flooded_with_approvals_before_reading_it() -> None:
    """`resume` reads every request file to drop the approvals no person gave, and kept each
    one it dropped: 20,000 approvals a taken-over bundle wrote took 9 s and 97 MiB of the
    person's `resume`, and a file may hold 64 KiB. A dir holding more files than a bundle
    keeps is refused unread, naming the way on, and no fresh bundle starts on it."""
    for number in range(MAX_OPEN_REQUEST_FILES + 1):
        _planted_request("hostile", f"{number:08x}", status="approved")
    with _files_read() as read, pytest.raises(BottleError, match="taken over") as refused:
        config_seal.drop_unvouched_approvals("hostile", BottleDir.of("hostile"))
    assert "bottle-engine stop --rm hostile" in str(refused.value.fix)
    assert read == []


def _in_the_bundle(run: Callable[[], object]) -> str:
    """`run()` in a child running as `nobody`, the bundle's own user; what it raised, or ""."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        said = b""
        try:
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
            run()
        except BaseException as exc:
            said = f"{type(exc).__name__}: {exc}".encode()
        finally:
            os.write(writer, said)
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(child, 0)
    return said


@pytest.mark.skipif(os.geteuid() != 0, reason="the engine as root, the bundle as its own user")
@pytest.mark.usefixtures("state_nobody_reaches")
def test_the_persons_answer_that_rotates_the_log_leaves_it_the_bundles() -> None:
    """The engine (root) answering as the log passes its size cap rotated it and made a new
    approvals.jsonl of its own, 0600: the bundle could open no request after that, for the
    rest of the bottle's life (the agent can bring the log to its cap with requests)."""
    bottle = BottleDir.create("hostile").path
    os.chown(bottle, NOBODY, NOBODY)
    for above in (bottle.parent, bottle.parent.parent):
        above.chmod(0o711)  # as the bundle's mount: the child reaches the dir itself
    limits = ApprovalLimits(audit_log_max_bytes=3000)

    def store() -> ApprovalStore:
        return ApprovalStore(bottle, "hostile", limits)

    assert _in_the_bundle(lambda: store().open_request("a" * 1000, "why", 60)) == ""
    assert _in_the_bundle(lambda: store().open_request("b" * 1000, "why", 60)) == ""
    [first, *_] = store().all()
    store().answer(first.id, True, None)  # the line that passes the cap: the log is rotated

    assert _in_the_bundle(lambda: store().open_request("c", "why", 60)) == ""


def test_a_lock_the_bundle_never_lets_go_of_does_not_hang_the_persons_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundle and the person's answer share a lock file, which the bundle takes for a moment
    per request; a taken-over bundle takes it and keeps it. `deny` waited for it forever, and so
    did each answer given in the editor, each in one of the language server's few worker
    threads: a handful of them, and the editor listed no bottle's requests, nor any bottle."""
    monkeypatch.setattr("bottle_engine.approvals.LOCK_WAIT_SECONDS", 0.5)
    request_id = _pending_request()
    lock = os.open(state.bottle_dir("hostile") / APPROVALS_DIR_NAME / ".lock", os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as the bundle holds it: another open file of the lock
    outcome: list[int] = []
    answer = threading.Thread(
        target=lambda: outcome.append(main(["deny", request_id, "--bottle", "hostile"])),
        daemon=True,
    )
    try:
        answer.start()
        answer.join(timeout=10)
    finally:
        os.close(lock)  # an answer still waiting goes on now
        answer.join(timeout=10)
    assert outcome == [1], "the answer waited for the bundle's lock"
    err = capsys.readouterr().err
    assert "lock" in err and "stop --rm hostile" in err
    still = ApprovalStore(state.bottle_dir("hostile"), "hostile").get(request_id)
    assert still is not None and still.pending
