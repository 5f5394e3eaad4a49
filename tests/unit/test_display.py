"""The one door for agent text: what a person sees is exactly what was sent, on one line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bottle_engine.display import safe_editor_text, safe_markup, safe_text


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("git status\x1b[2K\x1b[1Arm -rf /", "git status\\x1b[2K\\x1b[1Arm -rf /"),
        ("\x1b]52;c;Y3VybCBldmls\x07", "\\x1b]52;c;Y3VybCBldmls\\x07"),  # OSC 52 clipboard
        (
            "\x1b]8;;http://evil.invalid\x1b\\click\x1b]8;;\x1b\\",
            "\\x1b]8;;http://evil.invalid\\x1b\\\\click\\x1b]8;;\\x1b\\\\",
        ),
        ("ok\nID 1234 approved", "ok\\nID 1234 approved"),  # a forged row
        ("ok\r\x9b31m", "ok\\r\\x9b31m"),  # carriage return, C1 CSI
        ("abc\u202edcba", "abc\\u202edcba"),  # bidi override
        ("a\u2066b\u2069\u200bc\ufeff", "a\\u2066b\\u2069\\u200bc\\ufeff"),
        ("line\u2028sep", "line\\u2028sep"),
        ("typed \\x1b", "typed \\\\x1b"),  # an escape the agent typed stays distinguishable
        ("naïve café 日本", "naïve café 日本"),  # ordinary text is untouched
        # Invisible, though letters and marks: variation selectors, a Hangul filler, a CGJ.
        ("ok\ufe0f\U000e0101\u3164\u115f\u034f", "ok\\ufe0f\\U000e0101\\u3164\\u115f\\u034f"),
        ("ok\u2800\u2800no", "ok\\u2800\\u2800no"),  # the braille blank draws an empty cell
        # A run of blanks as long as a row is an empty row: past 16, each blank's escape, counted.
        ("a" + " " * 16 + "b", "a" + " " * 16 + "b"),
        ("a" + " " * 1900 + "b", "a\\x20{1900}b"),
        ("x" + "\u3000" * 20 + "\u2800" * 3 + "\u00a0y", "x\\u3000{20}\\u2800{3}\\xa0y"),
        ("typed \\x20{9}", "typed \\\\x20{9}"),  # a count the agent typed stays its own
        (" " * 17 + "{3}", "\\x20{17}\\x7b3}"),  # and cannot be read as part of ours
        # A combining mark on a blank, or on nothing, drawing nothing; on a letter it marks it.
        ("a \U00016fe4b\u0301", "a \\U00016fe4b\u0301"),
        ("\u0301e\u0301", "\\u0301e\u0301"),
        ("obj\ufffc \U0001343a", "obj\\ufffc \\U0001343a"),  # an empty glyph; unassigned here
    ],
)
def test_hostile_text_is_shown_as_visible_escapes(hostile: str, shown: str) -> None:
    assert safe_text(hostile) == shown


def test_a_table_cell_gets_what_a_terminal_draws_wider_than_rich_measures_as_escapes() -> None:
    """Spacing marks, skin-tone modifiers, regional indicators: a table row holding them spills
    over the terminal's edge into what reads as a row of its own (test_cli_display_attacks)."""
    text = "\u0915\u093e \U0001f1fa\U0001f44b\U0001f3fb"

    assert safe_markup(text, cell=True) == "\u0915\\u093e \\U0001f1fa\U0001f44b\\U0001f3fb"
    assert safe_markup(text) == safe_text(text) == text  # nothing lays them out by width


def test_long_text_is_cut_with_a_marker() -> None:
    assert safe_text("x" * 30, limit=10) == "x" * 10 + "… (20 more characters)"


def test_safe_text_never_emits_a_control_or_format_character() -> None:
    import unicodedata

    every = "".join(chr(code) for code in range(0x3000) if not 0xD800 <= code <= 0xDFFF)
    shown = safe_text(every, limit=-1)
    assert not [c for c in shown if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]


def test_rich_prints_markup_literally() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system=None, width=200).print(
        safe_markup("[conceal]secret[/conceal] [link=http://x.invalid]y[/link]")
    )
    assert out.getvalue() == "[conceal]secret[/conceal] [link=http://x.invalid]y[/link]\n"


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        # VS Code runs a command link in a notification on one click.
        (
            "[git status](command:workbench.action.quit)",
            "[git status]\\x28command:workbench.action.quit)",
        ),
        ("[docs](https://evil.invalid)", "[docs]\\x28https://evil.invalid)"),
        ("$(check) approved", "$\\x28check) approved"),  # an icon in a quick pick or lens
        ("typed ]\\x28", "typed ]\\\\x28"),  # the agent cannot type our escape
        ("a ] (b) [c]", "a ] (b) [c]"),  # brackets and parentheses on their own are text
        ("x\x1b[31m\n", "x\\x1b[31m\\n"),
    ],
)
def test_editor_text_has_no_link_or_icon_syntax(hostile: str, shown: str) -> None:
    assert safe_editor_text(hostile) == shown
