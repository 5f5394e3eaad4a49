"""The protocol every backend implements: prepare -> launch -> attach -> stop, plus status/resume.

`lifecycle.py` drives it; a backend owns everything it creates and removes it all when a
launch fails half way (or is interrupted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bottle_engine import records, state
from bottle_engine.claude_code import is_print_mode
from bottle_engine.dockerapi.client import LABEL_AGENT, LABEL_SLUG, LABEL_STATE
from bottle_engine.limits import PROBE_SECONDS
from bottle_engine.plan import BottlePlan, Planner
from bottle_engine.probes import Haystack
from bottle_engine.progress import Progress
from bottle_engine.records import BottleRecord
from bottle_engine.status import BottleStatus


def bottle_labels(plan: BottlePlan) -> dict[str, str]:
    """Labels on everything a bottle is made of, so `ls`, `stop` and `gc` find it later."""
    return {LABEL_SLUG: plan.slug, LABEL_AGENT: plan.agent, LABEL_STATE: state.state_id()}


def wants_tty(command: Sequence[str], *, terminal: bool | None) -> bool:
    """Does the agent get a TTY? Yes when a person attaches from a terminal at once; otherwise
    only when its command is interactive, so that someone can attach later. A command known to
    print one answer (`claude -p`) gets none: its output in `attach` and `logs` stays the
    program's own bytes (`--output-format json` parses), not a terminal's rendering of them."""
    if terminal:
        return True
    return not is_print_mode(command)


def orphan_test() -> Callable[[Mapping[str, str] | None], bool]:
    """Whether a resource with these labels is an orphan of this state dir: a bottle's, labelled
    with this state dir, whose slug has no record here (a crashed CLI, a deleted record)."""
    known = {r.slug for r in records.all_records()}
    ours = state.state_id()

    def orphaned(labels: Mapping[str, str] | None) -> bool:
        slug = (labels or {}).get(LABEL_SLUG)
        return bool(slug) and slug not in known and (labels or {}).get(LABEL_STATE) == ours

    return orphaned


@dataclass(frozen=True)
class Availability:
    """Can a backend be used here? `detail` says what answered, or why not; `fix` the way out."""

    ok: bool
    detail: str
    fix: str | None = None

    def __bool__(self) -> bool:
        return self.ok


class Backend(Protocol):
    name: str

    def available(self) -> Availability:
        """Whether this backend's tools answer on this machine (without starting anything)."""
        ...

    def launch(
        self, planner: Planner, progress: Progress, *, terminal: bool | None = None
    ) -> BottleRecord:
        """Build or reuse artifacts, start the bundle and then the sandbox; return its record.

        `terminal`: whether a person attaches from a terminal right after (None: unknown); the
        backend decides the agent's TTY from it (`wants_tty`).

        `planner(slug, taken_subnets)` makes the plan for a candidate slug, so the backend can
        move to the next name or subnet when one is taken. On any failure everything created so
        far is removed before the error propagates.
        """
        ...

    def attach(self, record: BottleRecord) -> int:
        """Connect the terminal to the running agent; the agent's exit code."""
        ...

    def stop(self, record: BottleRecord, *, remove: bool) -> None:
        """Stop the agent and its bundle; with `remove`, delete them and their networks."""
        ...

    def resume(self, record: BottleRecord, progress: Progress) -> None:
        """Start a stopped bottle again (bundle first)."""
        ...

    def status(self, record: BottleRecord) -> BottleStatus:
        """The bottle's status from all its parts (sandbox, bundle, network), with the fix
        when a part is down or gone."""
        ...

    def logs(self, record: BottleRecord, *, bundle: bool, follow: bool) -> Iterator[bytes]:
        """The agent's (or with `bundle`, the bundle's) output so far, or as it comes."""
        ...

    def exec(self, record: BottleRecord, argv: Sequence[str], *, tty: bool) -> int:
        """Run a command in the running sandbox as the agent, on this process's stdin, stdout
        and stderr (with a TTY when `tty`); its exit code."""
        ...

    def exec_as_agent(
        self, record: BottleRecord, argv: Sequence[str], *, seconds: float = PROBE_SECONDS
    ) -> tuple[int, str]:
        """Run a command in the sandbox as the agent, without stdin; its exit code and the last
        `PROBE_OUTPUT_BYTES` of its output, waited for `seconds` at most (`UNFINISHED` then):
        the agent can write into the command's output, hold it open, or stop it."""
        ...

    def secret_haystacks(self, record: BottleRecord, seconds: float) -> Iterator[Haystack]:
        """Everything a leaked secret could hide in, place by place as the caller goes on:
        every process's environment, then each of `HAYSTACK_DIRS` as a tar archive, each as
        bytes read from the sandbox as they come (never held whole). A place whose output is
        still open `seconds` after the first was started raises `CommandFailed` (`HELD_OPEN`):
        the agent can stop the commands that run as its user."""
        ...

    def orphans(self) -> list[str]:
        """Names of resources this backend made that no record accounts for."""
        ...

    def remove_orphans(self) -> list[str]: ...
