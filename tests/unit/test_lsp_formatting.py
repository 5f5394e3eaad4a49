"""Layout-only formatting: what changes, and what never does."""

from __future__ import annotations

from bottle_lsp.formatting import format_text


def test_spacing_blank_lines_and_final_newline() -> None:
    assert format_text("\n\n[a]\nx=1   \n\n\n[b]\ny  =  2") == "[a]\nx = 1\n\n[b]\ny = 2\n"


def test_multiline_strings_and_comments_stay_as_written() -> None:
    text = '# keep=me\n[agents.dev]\nprompt = """\n  a=1   \n\n\n"""  # and me\n'
    assert format_text(text) == text


def test_formatted_text_is_stable() -> None:
    once = format_text("[a]\nx=1\n\n\n")
    assert once is not None and format_text(once) == once


def test_broken_toml_is_not_formatted() -> None:
    assert format_text("[a\n") is None
