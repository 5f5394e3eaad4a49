"""Source positions: where every key and value of a manifest stands in its text.

Diagnostics, hover and quick fixes all rely on these spans, so each TOML shape that a manifest
may use is pinned here with exact positions. Helpers return the text under a span, which reads
better than raw coordinates and checks both ends at once.
"""

from __future__ import annotations

from bottle_engine.manifest.source import (
    TOO_DEEP,
    KeyPath,
    ParsedToml,
    Position,
    Span,
    parse_toml,
)


def offset(text: str, position: Position) -> int:
    """A position as an index into the text (shared by the other manifest tests)."""
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: position.line]) + position.character


def under(parsed: ParsedToml, span: Span) -> str:
    """The text a span covers (spans may cross lines)."""
    return parsed.text[offset(parsed.text, span.start) : offset(parsed.text, span.end)]


def key_at(parsed: ParsedToml, path: KeyPath) -> str:
    return under(parsed, parsed.locations[path].key)


def value_at(parsed: ParsedToml, path: KeyPath) -> str:
    return under(parsed, parsed.locations[path].value)


def start_of(parsed: ParsedToml, path: KeyPath, *, value: bool = False) -> tuple[int, int]:
    located = parsed.locations[path]
    start = (located.value if value else located.key).start
    return (start.line, start.character)


def test_plain_key_and_value_positions() -> None:
    parsed = parse_toml('[bottles.default]\nmemory   =   "4g"  # why\ncpus = 2\n')
    assert start_of(parsed, ("bottles", "default", "memory")) == (1, 0)
    assert start_of(parsed, ("bottles", "default", "memory"), value=True) == (1, 13)
    assert value_at(parsed, ("bottles", "default", "memory")) == '"4g"'
    assert value_at(parsed, ("bottles", "default", "cpus")) == "2"


def test_table_header_key_is_its_own_name_and_value_the_whole_header() -> None:
    parsed = parse_toml("[ bottles . default ]  # comment\n")
    assert key_at(parsed, ("bottles", "default")) == "default"
    assert value_at(parsed, ("bottles", "default")) == "[ bottles . default ]"
    assert parsed.locations[("bottles", "default")].is_header
    # The implicit parent table is located at its part of the header.
    assert key_at(parsed, ("bottles",)) == "bottles"


def test_dotted_keys_locate_every_part() -> None:
    parsed = parse_toml('[bottles.default]\negress . allow = ["a.example"]\n')
    assert key_at(parsed, ("bottles", "default", "egress")) == "egress"
    assert key_at(parsed, ("bottles", "default", "egress", "allow")) == "allow"
    assert start_of(parsed, ("bottles", "default", "egress", "allow")) == (1, 9)
    assert value_at(parsed, ("bottles", "default", "egress", "allow", 0)) == '"a.example"'


def test_dotted_keys_at_the_top_level() -> None:
    parsed = parse_toml('agents.dev.command = ["claude"]\n')
    assert key_at(parsed, ("agents",)) == "agents"
    assert key_at(parsed, ("agents", "dev")) == "dev"
    assert key_at(parsed, ("agents", "dev", "command")) == "command"
    assert start_of(parsed, ("agents", "dev", "command", 0), value=True) == (0, 22)


def test_inline_tables_nest_their_positions() -> None:
    text = '[bottles]\ndefault = { env = { LANG = "C" }, egress.allow = ["x.example"] }\n'
    parsed = parse_toml(text)
    assert value_at(parsed, ("bottles", "default")).startswith("{ env")
    assert value_at(parsed, ("bottles", "default")).endswith('["x.example"] }')
    assert key_at(parsed, ("bottles", "default", "env", "LANG")) == "LANG"
    assert value_at(parsed, ("bottles", "default", "env", "LANG")) == '"C"'
    assert key_at(parsed, ("bottles", "default", "egress", "allow")) == "allow"
    assert value_at(parsed, ("bottles", "default", "egress", "allow", 0)) == '"x.example"'


def test_multi_line_array_with_comments_locates_each_element() -> None:
    text = (
        "[bottles.default.egress]\n"
        "allow = [\n"
        '  "a.example",  # first, with a comment holding "quotes", [brackets] and = signs\n'
        "  # a whole-line comment between elements\n"
        '  "b.example",\n'
        "\n"
        '  "c.example",\n'
        "]\n"
    )
    parsed = parse_toml(text)
    path: KeyPath = ("bottles", "default", "egress", "allow")
    assert start_of(parsed, (*path, 0), value=True) == (2, 2)
    assert start_of(parsed, (*path, 1), value=True) == (4, 2)
    assert start_of(parsed, (*path, 2), value=True) == (6, 2)
    assert value_at(parsed, (*path, 2)) == '"c.example"'
    assert (*path, 3) not in parsed.locations
    whole = parsed.locations[path].value
    assert (whole.start, whole.end) == (Position(1, 8), Position(7, 1))


def test_multi_line_strings_span_their_lines() -> None:
    text = '[agents.dev]\nprompt = """\nline one\nline "two" ""\n"""\ncommand = ["x"]\n'
    parsed = parse_toml(text)
    assert value_at(parsed, ("agents", "dev", "prompt")) == '"""\nline one\nline "two" ""\n"""'
    assert start_of(parsed, ("agents", "dev", "command")) == (5, 0)


def test_escaped_quotes_do_not_end_a_multi_line_string() -> None:
    text = '[agents.dev]\nprompt = """a\\"""b = 1\n"""\ncommand = ["x"]\n'
    parsed = parse_toml(text)
    assert parsed.data["agents"]["dev"]["prompt"] == 'a"""b = 1\n'
    assert ("agents", "dev", "b") not in parsed.locations
    assert value_at(parsed, ("agents", "dev", "prompt")) == '"""a\\"""b = 1\n"""'
    assert start_of(parsed, ("agents", "dev", "command")) == (3, 0)


def test_literal_strings_end_at_their_quote_even_after_a_backslash() -> None:
    text = "[bottles.default]\ndockerfile = 'C:\\dir\\'\nmemory = '''4g\\'''\n"
    parsed = parse_toml(text)
    assert value_at(parsed, ("bottles", "default", "dockerfile")) == "'C:\\dir\\'"
    assert value_at(parsed, ("bottles", "default", "memory")) == "'''4g\\'''"


def test_multi_line_string_may_end_with_extra_quotes() -> None:
    parsed = parse_toml('[agents.dev]\nprompt = """say "hi"""""\ncopy_cwd = true\n')
    assert parsed.data["agents"]["dev"]["prompt"] == 'say "hi""'
    assert value_at(parsed, ("agents", "dev", "prompt")) == '"""say "hi"""""'
    assert value_at(parsed, ("agents", "dev", "copy_cwd")) == "true"


def test_quoted_keys_are_decoded_in_paths_and_located_with_their_quotes() -> None:
    parsed = parse_toml('[agents."my agent"]\n\'lit.key\' = 1\n"esc\\u0041" = 2\n')
    assert key_at(parsed, ("agents", "my agent")) == '"my agent"'
    assert key_at(parsed, ("agents", "my agent", "lit.key")) == "'lit.key'"
    assert key_at(parsed, ("agents", "my agent", "escA")) == '"esc\\u0041"'


def test_arrays_of_tables_are_numbered_in_document_order() -> None:
    text = (
        "[[bottles.x.git]]\n"  # 0
        'name = "a"\n'
        "[bottles.y]\n"  # a table in between does not disturb the count
        "cpus = 1\n"
        "[[bottles.x.git]]\n"  # 4
        'name = "b"\n'
        "[[bottles.y.git]]\n"  # 6: another bottle's array counts on its own
        'name = "c"\n'
    )
    parsed = parse_toml(text)
    assert start_of(parsed, ("bottles", "x", "git", 0)) == (0, 12)
    assert value_at(parsed, ("bottles", "x", "git", 0)) == "[[bottles.x.git]]"
    assert value_at(parsed, ("bottles", "x", "git", 0, "name")) == '"a"'
    assert start_of(parsed, ("bottles", "x", "git", 1), value=True) == (4, 0)
    assert value_at(parsed, ("bottles", "x", "git", 1, "name")) == '"b"'
    assert start_of(parsed, ("bottles", "y", "git", 0, "name"), value=True) == (7, 7)
    # The array itself is located at its first header.
    assert start_of(parsed, ("bottles", "x", "git"), value=True) == (0, 0)


def test_subtable_of_an_array_element_belongs_to_the_latest_element() -> None:
    text = (
        '[[bottles.x.git]]\nname = "a"\n'
        '[[bottles.x.git]]\nname = "b"\n'
        "[bottles.x.git.extra]\nq = 1\n"
    )
    parsed = parse_toml(text)
    assert start_of(parsed, ("bottles", "x", "git", 1, "extra", "q")) == (5, 0)
    assert ("bottles", "x", "git", 0, "extra") not in parsed.locations


def test_section_span_runs_to_the_next_header() -> None:
    text = '[[bottles.x.git]]\nname = "a"\n\n[[bottles.x.git]]\nname = "b"\n'
    parsed = parse_toml(text)
    first = parsed.section_span(("bottles", "x", "git", 0))
    assert under(parsed, first) == '[[bottles.x.git]]\nname = "a"\n\n'
    last = parsed.section_span(("bottles", "x", "git", 1))
    assert under(parsed, last) == '[[bottles.x.git]]\nname = "b"\n'


def test_crlf_line_endings_keep_columns_and_leave_cr_out_of_values() -> None:
    text = '[bottles.default]\r\nmemory = "4g"\r\ncpus = 2\r\nenv = { A = "b" }\r\n'
    parsed = parse_toml(text)
    assert start_of(parsed, ("bottles", "default", "memory"), value=True) == (1, 9)
    assert value_at(parsed, ("bottles", "default", "memory")) == '"4g"'
    assert value_at(parsed, ("bottles", "default", "cpus")) == "2"
    assert start_of(parsed, ("bottles", "default", "env", "A"), value=True) == (3, 12)


def test_bare_values_end_before_comments_and_separators() -> None:
    parsed = parse_toml("a = 1979-05-27T07:32:00Z # when\nb = [1e3, inf,-2]\nc = { d = true}\n")
    assert value_at(parsed, ("a",)) == "1979-05-27T07:32:00Z"
    assert [value_at(parsed, ("b", index)) for index in range(3)] == ["1e3", "inf", "-2"]
    assert value_at(parsed, ("c", "d")) == "true"


def test_span_of_falls_back_to_the_nearest_located_parent() -> None:
    parsed = parse_toml("[bottles.default]\n")
    span = parsed.span_of(("bottles", "default", "egress", "allow"))
    assert span == parsed.locations[("bottles", "default")].key


def test_syntax_errors_carry_their_real_position() -> None:
    parsed = parse_toml('[agents.dev]\ncommand = ["claude",\n  "x" "y"]\n')
    assert parsed.syntax_error is not None
    assert parsed.syntax_error_at == Position(2, 6)
    assert parsed.locations == {}


def test_syntax_error_at_the_end_points_at_the_end() -> None:
    parsed = parse_toml('[agents.dev]\nprompt = "unterminated')
    assert parsed.syntax_error == "Unterminated string"
    assert parsed.syntax_error_at == Position(1, 22)


def test_a_document_nested_past_the_parsers_depth_is_a_syntax_error_at_its_deepest_point() -> None:
    # tomllib recurses once per nested array or inline table: without the bound a manifest (or
    # the editor's buffer) of nested brackets was a RecursionError out of every command.
    nested = "{a=" * 2000 + "1" + "}" * 2000
    parsed = parse_toml(f'[agents.dev]\n# a comment [[[[\nprompt = "[["\ncommand = {nested}\n')
    assert parsed.syntax_error == TOO_DEEP
    assert parsed.syntax_error_at == Position(3, 10 + 3 * 1999)
    assert parsed.locations == {}
