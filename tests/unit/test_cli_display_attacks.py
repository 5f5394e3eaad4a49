"""A hostile agent against what the CLI prints through rich: its emoji codes and its widths.

`safe_markup` escapes rich's markup, but rich does more with a string than read tags: it turns
`:name:` into an emoji, and it lays a table out by its own measure of each character's width.
The agent writes the texts of its approval requests; a person reads them in `approvals` (a
table) and answers with `approve`. What the person reads must be what was sent, and each row
the person sees must be one the store holds.
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from bottle_engine import state
from bottle_engine.approvals import ApprovalRequest, ApprovalStore
from bottle_engine.cli import main
from bottle_engine.cli.output import console, err_console

COLUMNS = 120
# Rich's emoji codes; the `-text` form also adds U+FE0E, which safe_text escapes on purpose.
EMOJI_CODES = "rm -rf :file_folder: :keycap_1::zero: :white_check_mark: :smile-text:"
# Emoji skin-tone modifiers: Unicode gives them East Asian Width W (two columns, as terminals
# draw them alone), rich measures them 0 wide.
MODIFIER = "\U0001f3fb"
# Regional indicators: rich measures them 1 wide, terminals that draw emoji wide (kitty,
# WezTerm, VS Code's xterm.js in its Unicode 11 mode) 2.
REGIONAL = "\U0001f1e6"
# A consonant and its vowel sign (a spacing mark): rich measures one column, xterm and VTE
# draw two.
SPACING_MARK = "\u0915\u093e"


def ask(action: str, reason: str = "why") -> ApprovalRequest:
    return ApprovalStore(state.bottle_dir("b1"), "b1").open_request(action, reason, 600)


def listing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What `approvals` prints, laid out for a terminal COLUMNS wide."""
    monkeypatch.setattr(console, "width", COLUMNS)
    assert main(["approvals"]) == 0
    return capsys.readouterr().out


def drawn_width(char: str) -> int:
    """Columns a terminal gives `char`: Unicode's East Asian Width (W and F two, marks and
    format characters none), regional indicators two as emoji-wide terminals draw them."""
    if unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F") or "\U0001f1e6" <= char <= "\U0001f1ff":
        return 2
    return 1


def screen_rows(output: str, columns: int) -> list[str]:
    """The rows a terminal `columns` wide shows for `output`: a longer line wraps there."""
    rows = []
    for line in output.split("\n"):
        row, used = "", 0
        for char in line:
            width = drawn_width(char)
            if used + width > columns:
                rows.append(row)
                row, used = "", 0
            row, used = row + char, used + width
        rows.append(row)
    return rows


def test_emoji_codes_in_an_action_are_listed_as_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ask(EMOJI_CODES, reason=":warning: read me")

    out = listing(capsys, monkeypatch)

    words = out.split()  # the ACTION column wraps between words, beside the REASON column
    assert set(EMOJI_CODES.split()) | {":warning:"} <= set(words)
    assert "\ufe0e" not in out and "\u2705" not in out


def test_approve_prints_the_action_with_its_emoji_codes_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = ask(EMOJI_CODES)

    assert main(["approve", request.id]) == 1  # off a terminal: shown, not answered
    assert f"action:      {EMOJI_CODES}\n" in capsys.readouterr().err

    assert main(["approve", request.id, "--fingerprint", request.fingerprint]) == 0
    assert capsys.readouterr().out == f"{request.id} approved: {EMOJI_CODES}\n"


def test_an_error_quoting_an_emoji_code_prints_it_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ask("something")

    assert main(["approve", ":one:", "--bottle", "b1"]) == 1
    err = capsys.readouterr().err
    assert "':one:'" in err and "1\ufe0f" not in err


def looks_blank(row: str) -> bool:
    """A terminal row that shows nothing: spaces, characters drawn as nothing although they
    are not spaces (Unicode names them BLANK or FILLER; U+FFFC has an empty glyph in DejaVu Sans
    Mono), combining marks with nothing to mark, and what a terminal knows no glyph for."""
    return all(
        char.isspace()
        or char == "\ufffc"
        or unicodedata.category(char) in ("Mn", "Me", "Cn")
        or any(word in unicodedata.name(char, "") for word in ("BLANK", "FILLER"))
        for char in row
    )


@pytest.mark.parametrize(
    "filler",
    [
        " " * 1900,
        "\u00a0" * 1900,
        "\u3000" * 1900,
        "\u2800" * 1900,
        "\ufffc" * 1900,  # the object replacement character: an empty glyph in DejaVu Sans Mono
        # Runs of 16 blanks, each ended by a combining mark that draws nothing (a Khitan filler,
        # Mn, zero width) or by an unassigned character (a newer terminal's zero-width one).
        (" " * 16 + "\U00016fe4") * 112,
        ("\u3000" * 16 + "\U00016fe4") * 112,
        (" " * 16 + "\U0001343a") * 112,
    ],
    ids=["space", "nbsp", "ideographic", "braille", "object", "mark", "wide-mark", "unassigned"],
)
def test_approve_shows_no_screen_of_blank_rows_above_what_it_asks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, filler: str
) -> None:
    """The CLI leaves wrapping to the terminal, which wraps a run of blanks as long as it is:
    1900 of them after the action the agent means were 23 empty rows, and the screen the
    person answers from showed the harmless words after them only."""
    meant = "git push --force origin main"
    request = ask(meant + filler + "git status")
    monkeypatch.setattr(err_console, "width", 80)

    assert main(["approve", request.id]) == 1  # off a terminal: shown, not answered
    rows = screen_rows(capsys.readouterr().err, 80)

    blank_runs = "".join("b" if looks_blank(row) else "-" for row in rows).split("-")
    assert max(map(len, blank_runs)) <= 1, rows


@pytest.mark.parametrize(
    "wide",
    [MODIFIER, REGIONAL, SPACING_MARK],
    ids=["skin-tone", "regional-indicator", "spacing-mark"],
)
def test_no_line_of_the_listing_wraps_into_a_forged_row(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, wide: str
) -> None:
    """Characters rich measures narrower than a terminal draws them make a row of the table
    wider than the terminal: the rest wraps to the left edge, where the agent's text reads as a
    request of its own (here one the store does not hold)."""
    forged = "c0ffee00  b1  action  pending  1s ago  in 9m  git status"
    # 28 modifiers: the ACTION column starts at column 54, so the wrap falls at the forged id.
    real = ask("git status" + wide * 28 + forged, reason=forged)

    out = listing(capsys, monkeypatch)
    rows = screen_rows(out, COLUMNS)

    assert all(sum(map(drawn_width, line)) <= COLUMNS for line in out.split("\n")), rows
    requests = [row for row in rows if re.match(r"[0-9a-f]{8}  ", row)]
    assert [row[:8] for row in requests] == [real.id], rows


@pytest.mark.parametrize(("quiet", "terminal"), [(True, False), (False, False), (False, True)])
def test_a_launch_warning_stays_on_stderr_in_every_mode_and_cannot_drive_the_terminal(
    monkeypatch: pytest.MonkeyPatch, quiet: bool, terminal: bool
) -> None:
    """What the launch could not search (a file name the project holds) is told the person on
    stderr with --quiet and --json too, off a terminal too, and is not replaced by the next
    detail as a status line's text is; it quotes names the agent may have chosen."""
    import io

    from rich.console import Console

    from bottle_engine.cli import progress as cli_progress

    screen = io.StringIO()
    err = Console(file=screen, force_terminal=terminal, width=300, highlight=False)
    monkeypatch.setattr(cli_progress, "err_console", err)
    with cli_progress.cli_progress(quiet=quiet) as progress:
        progress.stage("start bundle, create agent")
        progress.warn("not searched: /workspace/x.zst\x1b]52;c;aGk=\x07 [red]x[/red]")
        progress.detail("a later detail")
    shown = screen.getvalue()
    assert "warning:" in shown and "not searched: /workspace/x.zst" in shown
    assert "[red]x[/red]" in shown and "\x1b]52" not in shown
