"""The terminal guard: what of the agent's terminal stream may reach the person's terminal."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bottle_engine.terminal_guard import MAX_CSI, Mode, TerminalGuard

INTERACTIVE, REPLAY = Mode.INTERACTIVE, Mode.REPLAY

# What a terminal may receive from the guard: text without controls, TAB/LF/CR/BS/BEL, and
# complete CSI or ESC sequences made only of checked parts (never a string, never C1).
_SAFE = re.compile(
    rb"(?:[\t\n\r\b\x07\x20-\x7e]|[\xc2][\xa0-\xbf]|[\xc3-\xf4][\x80-\xbf]+"
    rb"|\x1b\[[<=>?]?[0-9;:]*[ $]?[@-~]|\x1b[78DEM=>]|\x1b[()][0B])"
)


def passed(data: bytes, mode: Mode) -> bytes:
    """What the guard passes of `data` (no restore at the end)."""
    return TerminalGuard(mode).feed(data)


def byte_by_byte(data: bytes, mode: Mode) -> bytes:
    guard = TerminalGuard(mode)
    return b"".join(guard.feed(data[i : i + 1]) for i in range(len(data)))


def only_safe_tokens(output: bytes) -> bool:
    return _SAFE.sub(b"", output) == b""


# Sequences that must never reach a person's terminal, in either mode: (name, bytes).
NEVER = [
    ("osc52-clipboard", b"\x1b]52;c;cm0gLXJmIH4=\x07"),
    ("osc52-st", b"\x1b]52;c;cm0gLXJmIH4=\x1b\\"),
    ("title-set", b"\x1b]0;sudo password:\x07"),
    ("title-report", b"\x1b[21t"),
    ("icon-report", b"\x1b[20t"),
    ("title-stack", b"\x1b[22;0t"),
    ("window-resize", b"\x1b[8;1;1t"),
    ("window-iconify", b"\x1b[2t"),
    ("window-move", b"\x1b[3;0;0t"),
    ("decrqss", b"\x1bP$qm\x1b\\"),
    ("xtgettcap", b"\x1bP+q544e\x1b\\"),
    ("osc10-query", b"\x1b]10;?\x07"),
    ("osc11-query", b"\x1b]11;?\x1b\\"),
    ("osc4-query", b"\x1b]4;1;?\x07"),
    ("tmux-passthrough", b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\"),
    ("kitty-graphics", b"\x1b_Ga=T,f=100;AAAA\x1b\\"),
    ("pm", b"\x1b^private\x1b\\"),
    ("sos", b"\x1bXstart of string\x1b\\"),
    ("osc8-link", b"\x1b]8;;http://evil.invalid/\x1b\\"),
    ("vscode-633", b"\x1b]633;E;rm -rf ~\x07"),
    ("shell-133", b"\x1b]133;C\x07"),
    ("c1-csi-utf8", "\u009b6n".encode()),
    ("c1-osc-utf8", "\u009d52;c;eA==\u009c".encode()),
    ("c1-dcs-utf8", "\u0090$qm\u009c".encode()),
    ("enq-answerback", b"\x05"),
    ("decscl-8bit", b'\x1b[62;2"p'),
    ("s8c1t", b"\x1b G"),
    ("ris", b"\x1bc"),
    ("decstr", b"\x1b[!p"),
    ("deccolm", b"\x1b[?3h"),
    ("shift-out", b"\x0e"),
    ("huge-repeat", b"x\x1b[999999999b"),
    ("xtsave-restore", b"\x1b[?1049s"),
    ("mouse-highlight", b"\x1b[1;2;3;4;5T"),
    # Clears the person's tab stops for good: nothing restores them (TBC, one or all).
    ("tab-clear-all", b"\x1b[3g"),
    ("tab-clear", b"\x1b[g"),
    # Status report: its answer is what ends the drain at the end of a session, so an agent
    # that asked it last would let its other answers through to the person's shell.
    ("dsr-status", b"\x1b[5n"),
]
# Queries: their answer is typed by the terminal; allowed only where the agent reads it.
QUERIES = [
    ("cpr", b"\x1b[6n"),
    ("da1", b"\x1b[c"),
    ("da2", b"\x1b[>c"),
    ("da3", b"\x1b[=c"),
    ("kitty-query", b"\x1b[?u"),
    ("xtversion", b"\x1b[>q"),
    ("decrqm", b"\x1b[?2026$p"),
    ("text-area-size", b"\x1b[18t"),
]
# What a TUI such as Claude Code draws with: passed as is in both modes.
DRAWING = [
    b"\x1b[1;38;2;255;0;0mred\x1b[0m",
    b"\x1b[38:5:208mx\x1b[m",
    b"\x1b[2K\x1b[1A\x1b[G\x1b[3;4H\x1b[J\x1b[2J\x1b[K\x1b[5X\x1b[2P\x1b[3@\x1b[L\x1b[M",
    b"\x1b[?25l\x1b[?25h\x1b[?2026h\x1b[?2026l\x1b[?1049h\x1b[?1049l\x1b[?7l\x1b[?7h",
    b"\x1b7\x1b8\x1bM\x1b[s\x1b[u\x1b[2;20r\x1b[r\x1b[S\x1b[2T",
    b"\x1b(0lqk\x1b(B",
    b"\x1b[4 q",
    "café ✻ 日本 ⏺ ╭─╮".encode(),
    b"tab\there\r\nback\bspace\x07",
]
# Modes that make the terminal type: the agent's TUI needs them; a replay does not.
INPUT_MODES = [
    b"\x1b[?1000h",
    b"\x1b[?1002;1006h",
    b"\x1b[?2004h",
    b"\x1b[?1004h",
    b"\x1b[?1h\x1b=",
    b"\x1b[>1u",
    b"\x1b[>4;2m",
    b"\x1b[?2031h",  # Claude Code: colour theme change reports
]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(("name", "attack"), NEVER, ids=[n for n, _ in NEVER])
def test_a_dangerous_sequence_never_passes(name: str, attack: bytes, mode: Mode) -> None:
    data = b"before" + attack + b"after"
    assert passed(data, mode).replace(b"x", b"") == b"beforeafter"
    assert byte_by_byte(data, mode).replace(b"x", b"") == b"beforeafter"


@pytest.mark.parametrize(("name", "query"), QUERIES, ids=[n for n, _ in QUERIES])
def test_a_query_passes_only_where_its_answer_goes_to_the_agent(name: str, query: bytes) -> None:
    assert passed(b"a" + query + b"b", INTERACTIVE) == b"a" + query + b"b"
    assert passed(b"a" + query + b"b", REPLAY) == b"ab"


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("drawing", DRAWING)
def test_what_a_tui_draws_with_passes_unchanged(drawing: bytes, mode: Mode) -> None:
    assert passed(drawing, mode) == drawing
    assert byte_by_byte(drawing, mode) == drawing


@pytest.mark.parametrize("modes", INPUT_MODES)
def test_input_modes_pass_in_a_session_and_not_in_a_replay(modes: bytes) -> None:
    assert passed(modes, INTERACTIVE) == modes
    assert passed(modes, REPLAY) == b""


def test_only_the_allowed_modes_of_a_mixed_mode_set_pass() -> None:
    assert passed(b"\x1b[?3;25;1000h", REPLAY) == b"\x1b[?25h"
    assert passed(b"\x1b[?3;25;1000h", INTERACTIVE) == b"\x1b[?25;1000h"


@pytest.mark.parametrize(
    ("sgr", "shown"),
    [
        (b"\x1b[8m", b""),
        (b"\x1b[1;8;31m", b"\x1b[1;31m"),
        (b"\x1b[08m", b""),
        (b"\x1b[38;5;8;48;2;8;8;8;8m", b"\x1b[38;5;8;48;2;8;8;8m"),  # colour 8 stays
        (b"\x1b[38:5:8m", b"\x1b[38:5:8m"),
        (b"\x1b[28m", b"\x1b[28m"),
        # With sub-parameters: xterm.js (VS Code's terminal) conceals on the main value.
        (b"\x1b[8:0m", b""),
        (b"\x1b[8:m", b""),
        (b"\x1b[1;08:1;4:3m", b"\x1b[1;4:3m"),
        (b"\x1b[38:5:8;48;5;1m", b"\x1b[38:5:8;48;5;1m"),
        # Read with ";" for ":" (terminals before sub-parameters), these would conceal.
        (b"\x1b[1:8m", b""),
        (b"\x1b[38:2::1:2:8m", b""),
        (b"\x1b[38:2:1:2:8;4:3m", b"\x1b[38:2:1:2:8;4:3m"),  # there, 8 is the blue
    ],
)
def test_concealed_text_is_shown(sgr: bytes, shown: bytes) -> None:
    # Hidden text is copied with the visible text around it: a command could ride along.
    assert passed(sgr, REPLAY) == shown
    assert passed(sgr, INTERACTIVE) == shown


@pytest.mark.parametrize("final", [b"S", b"T", b"L", b"M"])
def test_a_line_count_is_clamped_to_more_than_a_screen(final: bytes) -> None:
    # xterm.js runs every one of 65535 line scrolls: twenty such sequences (200 bytes) held
    # VS Code's terminal for about 7 s. No screen has more than 256 lines to move.
    assert passed(b"\x1b[65535" + final, REPLAY) == b"\x1b[256" + final
    assert passed(b"\x1b[3" + final, REPLAY) == b"\x1b[3" + final
    assert passed(b"\x1b[3;4" + final, INTERACTIVE) == b""  # one count only


def test_a_repeat_is_clamped_to_a_line() -> None:
    assert passed(b"x\x1b[65535b", REPLAY) == b"x\x1b[1024b"
    assert passed(b"x\x1b[80b", INTERACTIVE) == b"x\x1b[80b"


def test_osc8_link_text_stays_visible_without_its_target() -> None:
    data = b"\x1b]8;;http://evil.invalid/\x1b\\git status\x1b]8;;\x1b\\"
    assert passed(data, INTERACTIVE) == b"git status"


def test_scrollback_erase_only_in_a_session() -> None:
    assert passed(b"\x1b[3J", INTERACTIVE) == b"\x1b[3J"
    assert passed(b"\x1b[3J", REPLAY) == b""


def test_a_sequence_split_at_every_byte_is_still_recognized() -> None:
    stream = b"".join(attack for _, attack in NEVER) + b"\x1b[31mok\x1b[0m"
    assert byte_by_byte(stream, REPLAY) == b"x\x1b[31mok\x1b[0m"


@pytest.mark.parametrize("mode", list(Mode))
def test_bidi_overrides_and_isolates_are_dropped(mode: Mode) -> None:
    # Where the terminal lays out bidi text, U+202E shows `rm -rf ~` in another order than the
    # one copied; the marks (U+200E/F) that right-to-left text needs stay.
    text = "echo \u202e~ fr- mr\u202c \u2067x\u2069 \u200fשלום"
    assert passed(text.encode(), mode) == "echo ~ fr- mr x \u200fשלום".encode()
    assert byte_by_byte(text.encode(), mode) == "echo ~ fr- mr x \u200fשלום".encode()


def test_a_utf8_character_split_between_chunks_is_kept() -> None:
    guard = TerminalGuard(REPLAY)
    text = "⏺ é".encode()
    assert b"".join(guard.feed(text[i : i + 1]) for i in range(len(text))) == text


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(
    ("attack", "shown"),
    [
        (b"\x9b6n", "\ufffd6n"),
        (b"\x9d52;c;eA==\x07", "\ufffd52;c;eA==\x07"),
        (b"\x90$qm\x9c", "\ufffd$qm\ufffd"),
    ],
)
def test_a_raw_8bit_control_reaches_the_terminal_as_a_replacement_character(
    attack: bytes, shown: str, mode: Mode
) -> None:
    # Not UTF-8: the terminal gets U+FFFD and the rest as plain text, never the C1 byte.
    assert passed(attack, mode) == shown.encode()


def test_an_unterminated_string_does_not_grow_memory() -> None:
    guard = TerminalGuard(REPLAY)
    chunk = b"A" * 65536
    tracemalloc.start()
    try:
        assert guard.feed(b"\x1b]52;c;") == b""
        for _ in range(1024):  # 64 MiB of one OSC
            assert guard.feed(chunk) == b""
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert guard.feed(b"\x07visible") == b"visible"


def test_an_overlong_csi_is_dropped_whole_and_holds_at_most_max_csi() -> None:
    guard = TerminalGuard(INTERACTIVE)
    assert guard.feed(b"\x1b[" + b"1;" * 100_000) == b""
    assert len(guard._held) <= MAX_CSI + 1
    assert guard.feed(b"mvisible") == b"visible"


def test_escape_aborts_a_sequence_and_cancel_returns_to_text() -> None:
    assert passed(b"\x1b[12\x1b[31mx", REPLAY) == b"\x1b[31mx"
    assert passed(b"\x1b]52;c;\x18shown", REPLAY) == b"shown"
    assert passed(b"\x1b[1;2\x1ashown", REPLAY) == b"shown"


def test_restore_undoes_what_the_agent_turned_on() -> None:
    guard = TerminalGuard(INTERACTIVE)
    guard.feed(b"\x1b[?1049h\x1b[?25l\x1b[?1000;1006h\x1b[?2004h\x1b[?2026h\x1b[31m\x1b[2;9r")
    guard.feed(b"\x1b=\x1b[>1u\x1b(0\x1b[4h\x1b[5 q")
    restore = guard.finish()
    for undo in (
        b"\x1b[?25h",
        b"\x1b[?1000l",
        b"\x1b[?1006l",
        b"\x1b[?2004l",
        b"\x1b[0m",
        b"\x1b7\x1b[r\x1b8",
        b"\x1b>",
        b"\x1b[<1u",
        b"\x1b(B",
        b"\x1b[4l",
        b"\x1b[0 q",
    ):
        assert undo in restore
    assert restore.startswith(b"\x1b[?2026l")  # else the terminal shows nothing after it
    # kitty keeps a keyboard stack per screen: popped on the alternate screen, before leaving.
    assert restore.index(b"\x1b[<1u") < restore.index(b"\x1b[?1049l")
    assert guard.restore() == b""  # once


def test_leaving_the_alternate_screen_cannot_bring_back_what_was_reset() -> None:
    # Leaving 1049 restores the cursor as DECRC does: the line-drawing charset and the red the
    # agent had when it entered. Reset before that, they would stay in the person's shell.
    guard = TerminalGuard(REPLAY)
    guard.feed(b"\x1b(0\x1b[31m\x1b[?1049h\x1b(B\x1b[0mtui")
    restore = guard.finish()
    left = restore.index(b"\x1b[?1049l")
    assert left < restore.rindex(b"\x1b(B") and left < restore.rindex(b"\x1b[0m"), restore


@pytest.mark.parametrize(
    ("stream", "reset"),
    [
        (b"\x1b[?6h\x1b7\x1b[?6l\x1b8", b"\x1b[?6l"),  # origin mode, saved by DECSC
        (b"\x1b[4h\x1b7\x1b[4l\x1b8", b"\x1b[4l"),  # insert mode, saved by VTE's DECSC
        (b"\x1b[?6h\x1b[?1049h\x1b[?6l\x1b[?1049l", b"\x1b[?6l"),
    ],
)
def test_a_mode_a_cursor_restore_turns_back_on_is_reset(stream: bytes, reset: bytes) -> None:
    guard = TerminalGuard(INTERACTIVE)
    guard.feed(stream)
    assert reset in guard.finish()


def test_a_cursor_restore_is_not_taken_for_a_mode_to_undo() -> None:
    # CSI ?1048l is DECRC: "undoing" CSI ?1048h would move the cursor to where the agent saved it.
    guard = TerminalGuard(INTERACTIVE)
    assert guard.feed(b"\x1b[?1048h") == b"\x1b[?1048h"
    assert guard.finish() == b""


def test_restore_leaves_alone_what_the_agent_turned_back() -> None:
    guard = TerminalGuard(INTERACTIVE)
    guard.feed(b"\x1b[?1049h\x1b[?25l\x1b[?25h\x1b[?1049l\x1b[?2004h\x1b[?2004l\x1b[m")
    assert guard.finish() == b""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.sampled_from(list(Mode)))
def test_any_stream_in_any_chunks_yields_only_safe_tokens(chunks: list[bytes], mode: Mode) -> None:
    guard = TerminalGuard(mode)
    output = b"".join(guard.feed(chunk) for chunk in chunks) + guard.finish()
    assert only_safe_tokens(output), output


_PIECES = b"\x1b [ ] P ? > 6 n 21 t ; \x07 \\ c \x9b \xc2\x9b \x18 52 m h u $ q x".split(b" ")
_ALPHABET = st.sampled_from([*_PIECES, b" "])


@settings(max_examples=500, deadline=None)
@given(st.lists(_ALPHABET, max_size=40))
def test_a_replay_never_passes_a_query_or_string(pieces: list[bytes]) -> None:
    guard = TerminalGuard(REPLAY)
    output = b"".join(guard.feed(piece) for piece in pieces)
    assert only_safe_tokens(output), output
    for query in [q for _, q in QUERIES] + [b"\x1b]", b"\x1bP", b"\x1b[21t"]:
        assert query not in output
