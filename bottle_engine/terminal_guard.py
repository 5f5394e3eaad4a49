"""The agent's own terminal stream, made safe for the person's terminal (pure, no I/O).

`attach`, `exec` and `logs` show what the agent writes to its TTY. A terminal does more than
print: escape sequences write the person's clipboard (OSC 52), link text to a hidden target
(OSC 8), fake commands in VS Code's terminal (OSC 633/133), move or resize the window, and make
the terminal *answer* (title report CSI 21 t, DSR, DA, DECRQSS, XTGETTCAP, colour queries):
an answer is typed into whatever reads the terminal next, the person's shell once a `logs`
ends. `TerminalGuard` is a streaming filter that lets through what a TUI such as Claude Code
draws with (text, SGR colours, cursor moves, erases, scrolling, the alternate screen, cursor
visibility, synchronized output, and, in an interactive session, mouse and paste modes and the
few queries it asks) and drops every other sequence whole.

Why it holds: the output is a concatenation of printable characters, a few C0 controls
(TAB, LF, CR, BS, BEL) and sequences this module rebuilt from parts it checked, each complete.
A string (OSC, DCS, SOS, PM, APC), a C1 control (raw 8-bit or UTF-8 encoded) or a sequence that
is not allowed never reaches the terminal, not even its first byte, so the terminal is back in
its ground state after every piece and a parse that differs from the terminal's can only drop
more. State is kept between chunks (a sequence may be split anywhere); what is held is bounded
(a CSI's parameters, at most `MAX_CSI` characters; a string is dropped as it comes, so an
unterminated OSC of a gigabyte costs nothing).

Two modes. INTERACTIVE (attach/exec on a TTY): the terminal's answers go to the agent's own
stdin, so the status and attribute queries a TUI needs (cursor position, DA, DECRQM, kitty
keyboard and XTVERSION queries, text area size) pass; never a title report, OSC, DCS or APC, nor
the status report (CSI 5 n), whose answer only the relay may ask for (it ends the drain).
REPLAY (`logs`, the output of a finished agent, a streamed attach or exec): no query at all, and
no mode that makes the terminal type (mouse, focus, bracketed paste, keypad), since the person's
shell reads what the terminal types. `restore()` gives the sequences that undo what the agent
turned on (alternate screen, hidden cursor, mouse and paste modes, scroll region, colours...),
for the end of a session; what leaving the alternate screen brings back (the charset, colours
and modes DECSC saved on entry) is reset once more after it.
"""

from __future__ import annotations

import codecs
import enum
import functools
import re
from dataclasses import dataclass, field

MAX_CSI = 64  # characters of a CSI's parameters and intermediates; longer: dropped whole
_MAX_ESC_INTERMEDIATES = 2
_MAX_NUMBER = 65535  # a bigger parameter (REP of a billion characters) drops the sequence

ESC = "\x1b"
CSI = ESC + "["


class Mode(enum.Enum):
    INTERACTIVE = "interactive"  # the terminal's answers go back to the agent
    REPLAY = "replay"  # the terminal's answers would reach the person's shell


class _State(enum.Enum):
    GROUND = enum.auto()
    ESCAPE = enum.auto()
    ESCAPE_INTERMEDIATE = enum.auto()
    CSI = enum.auto()
    CSI_IGNORE = enum.auto()
    STRING = enum.auto()  # OSC, DCS, SOS, PM, APC: dropped up to their end


# What ends a string: BEL, ST (ESC \ or U+009C), and CAN/SUB, which cancel any sequence.
_STRING_END = re.compile("[\x07\x1b\x18\x1a\x9c]")
_PASSED_C0 = frozenset("\t\n\r\b\x07")
_CANCEL = frozenset("\x18\x1a")  # CAN, SUB: abort a sequence
_C1_STRINGS = frozenset("\x90\x98\x9d\x9e\x9f")  # DCS, SOS, OSC, PM, APC
_C1_CSI = "\x9b"
_ST = "\x9c"
_ESC_STRINGS = frozenset("P]X^_")
# In the ground state: a run of printable text (everything but C0, DEL and C1, which arrive
# decoded from UTF-8, or as U+FFFD when a raw 8-bit byte was not UTF-8), or a whole CSI.
_GROUND_TOKEN = re.compile(f"([^\x00-\x1f\x7f-\x9f]+)|\x1b\\[([ -?]{{0,{MAX_CSI}}})([@-~])")
# Bidi embeddings, overrides and isolates: where a terminal lays out bidi text (VTE, Konsole,
# iTerm2) they show a command in another order than the one a person copies ("Trojan Source").
_BIDI_CONTROLS = re.compile(b"\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")  # in UTF-8
_CSI_BODY = re.compile(r"([<=>?]?)([0-9;:]*)([ -/]?)")

# ESC sequences (no CSI) that pass: save/restore cursor, index, reverse index, next line.
_ESCAPES = frozenset({"7", "8", "D", "E", "M"})
_ESCAPES_INTERACTIVE = frozenset({"=", ">"})  # keypad application mode: keys the TUI reads
_CHARSETS = frozenset({"(0", "(B", ")0", ")B"})  # line drawing and back

# A CSI is keyed by (prefix, intermediate, final); its parameters must match the pattern.
_Key = tuple[str, str, str]
_NUMBERS = "[0-9;:]*"
# What draws: cursor moves, erases, inserts, scrolling, tabs, colours, cursor shape, margins.
# Not TBC (CSI g): clearing the tab stops outlives the session, and nothing restores them.
_DRAWING: dict[_Key, str] = {("", "", final): _NUMBERS for final in "ABCDEFGHIKLMPXZ@`abdefm"}
_DRAWING |= {
    ("", "", "J"): "[012]?",  # not 3: the scrollback is the person's own history
    ("", "", "S"): "[0-9]*",  # one parameter: CSI with five and T starts mouse highlighting
    ("", "", "T"): "[0-9]*",
    ("", "", "r"): "([0-9]*;[0-9]*)?",  # scroll region
    ("", "", "s"): "",  # save / restore the cursor
    ("", "", "u"): "",
    ("", " ", "q"): "[0-6]?",  # cursor shape
    ("", "", "L"): "[0-9]*",  # insert, delete lines; repeat the last character: one count
    ("", "", "M"): "[0-9]*",
    ("", "", "b"): "[0-9]*",
}
# Counts a terminal does not bound by its screen: xterm.js (VS Code's terminal) runs 65535 line
# scrolls, inserts or deletes for CSI 65535 S, in about 0.3 s of the editor's time per ten
# bytes; REP prints its count. Clamped to more lines than any screen has, a line for REP.
_CLAMPED = {"S": 256, "T": 256, "L": 256, "M": 256, "b": 1024}
_UNNOTED = frozenset(key for key in _DRAWING if key[2] not in "mrq")  # nothing to undo
# For an interactive session only: the terminal's answer goes back to the agent, or the mode
# changes what the terminal types to it.
_INTERACTIVE: dict[_Key, str] = {
    ("", "", "J"): "3",
    ("", "", "n"): "6",  # cursor position; not 5 (status): its answer ends the drain
    ("?", "", "n"): "6",
    ("", "", "c"): "0?",  # DA1, DA2, DA3
    (">", "", "c"): "0?",
    ("=", "", "c"): "0?",
    (">", "", "q"): "0?",  # XTVERSION
    ("", "", "t"): "1[468]",  # the text area's size; never a title report (21) or window op
    ("", "$", "p"): "[0-9]+",  # DECRQM: is a mode set?
    ("?", "$", "p"): "[0-9]+",
    ("?", "", "u"): "",  # kitty keyboard: query, push, pop, set flags
    (">", "", "u"): "[0-9]*",
    ("<", "", "u"): "[0-9]*",
    ("=", "", "u"): "[0-9]+(;[1-3])?",
    (">", "", "m"): "4(;[0-2])?",  # modifyOtherKeys
}
# Those of them the terminal answers.
_QUERIES = frozenset(
    {("", "", "n"), ("?", "", "n"), ("", "", "c"), (">", "", "c"), ("=", "", "c")}
    | {(">", "", "q"), ("", "", "t"), ("", "$", "p"), ("?", "$", "p"), ("?", "", "u")}
)
# Modes: DEC private modes that only change what is shown, and those that make the terminal
# type (mouse, focus, bracketed paste, cursor keys, keypad) for an interactive session only;
# each with its default (on or off), which `restore` puts back.
_DEC_VISUAL = {5: False, 6: False, 7: True, 12: False, 25: True, 47: False, 1047: False}
_DEC_VISUAL |= {1048: False, 1049: False, 2026: False}
_DEC_INPUT = {1: False, 9: False, 66: False, 1000: False, 1002: False, 1003: False}
_DEC_INPUT |= {1004: False, 1005: False, 1006: False, 1007: False, 1015: False, 1016: False}
_DEC_INPUT |= {2004: False, 2031: False}  # 2031: the terminal reports a colour theme change
_ANSI_MODES = {4: False}  # insert mode
# End synchronized output first (else nothing after it shows), then leave the alternate screen,
# before anything else is reset: leaving 1049 restores the cursor as DECRC does, with the
# charset, colours and modes saved when the agent entered it.
_RESTORE_FIRST = (2026,)
_ALTERNATE_SCREENS = (47, 1047, 1049)
# Not a mode but a cursor save (h) or restore (l): nothing to undo.
_NOT_NOTED = frozenset({1048})
# Modes a DECRC (ESC 8, leaving 1049) can turn back on behind the guard's back, since DECSC
# saves them (origin mode; VTE also insert mode): reset whenever the agent ever turned them on.
_SAVED_WITH_CURSOR = frozenset({("?", 6), ("", 4)})
_CHARSET_RESET = f"{ESC}(B{ESC})B"
_SGR_RESET = f"{CSI}0m"


@dataclass
class _Screen:
    """What the agent changed in the terminal, to undo at the end (`TerminalGuard.restore`)."""

    dec_modes: dict[int, bool] = field(default_factory=dict)
    ansi_modes: dict[int, bool] = field(default_factory=dict)
    ever_on: set[tuple[str, int]] = field(default_factory=set)  # of _SAVED_WITH_CURSOR
    sgr: bool = False
    scroll_region: bool = False
    charset: bool = False
    keypad: bool = False
    cursor_style: bool = False
    kitty_pushes: int = 0
    kitty_flags: bool = False
    modify_other_keys: bool = False

    def note(self, key: _Key, params: str) -> None:
        """Remember what a passed CSI turned on or off."""
        if key[2] in "hl" and key[:2] in (("", ""), ("?", "")):
            self._note_modes(key[0], params, key[2] == "h")
        elif key == ("", "", "m"):
            self.sgr = self.sgr or params not in ("", "0")
        elif key == ("", "", "r"):
            self.scroll_region = params not in ("", ";")
        elif key == ("", " ", "q"):
            self.cursor_style = True
        elif key == (">", "", "u"):
            self.kitty_pushes += 1
        elif key == ("<", "", "u"):
            self.kitty_pushes = max(0, self.kitty_pushes - int(params or "1"))
        elif key == ("=", "", "u"):
            self.kitty_flags = True
        elif key == (">", "", "m"):
            self.modify_other_keys = params not in ("4", "4;0")

    def _note_modes(self, prefix: str, params: str, on: bool) -> None:
        noted = self.dec_modes if prefix == "?" else self.ansi_modes
        for mode in map(int, params.split(";")):
            if mode not in _NOT_NOTED:
                noted[mode] = on
            if on and (prefix, mode) in _SAVED_WITH_CURSOR:
                self.ever_on.add((prefix, mode))

    def modes_to_restore(self) -> list[str]:
        """Mode resets, synchronized output ended first; not the alternate screen's."""
        dec = {
            mode: default
            for mode, on in self.dec_modes.items()
            if mode not in _ALTERNATE_SCREENS
            and (
                on != (default := _DEC_VISUAL.get(mode, _DEC_INPUT.get(mode)))
                or ("?", mode) in self.ever_on
            )
        }
        order = [m for m in _RESTORE_FIRST if m in dec]
        order += sorted(m for m in dec if m not in _RESTORE_FIRST)
        out = [f"{CSI}?{mode}{'h' if dec[mode] else 'l'}" for mode in order]
        out += [
            f"{CSI}{mode}{'h' if _ANSI_MODES[mode] else 'l'}"
            for mode, on in self.ansi_modes.items()
            if on != _ANSI_MODES[mode] or ("", mode) in self.ever_on
        ]
        return out

    def restore(self) -> str:
        """Sequences that undo what was noted: all of it on the screen the agent is on (kitty
        keeps a keyboard stack per screen), then the alternate screen left, then once more what
        leaving it brings back (it restores the cursor as DECRC does, with the charset, colours
        and modes saved when the agent entered it)."""
        undo = [
            (self.kitty_pushes > 0, f"{CSI}<{self.kitty_pushes}u"),
            (self.kitty_flags, f"{CSI}=0;1u"),
            (self.modify_other_keys, f"{CSI}>4;0m"),
            (self.keypad, ESC + ">"),
            # DECSTBM homes the cursor: keep it where it is.
            (self.scroll_region, f"{ESC}7{CSI}r{ESC}8"),
            (self.charset, _CHARSET_RESET),
            (self.cursor_style, f"{CSI}0 q"),
            (self.sgr, _SGR_RESET),
        ]
        leave = [f"{CSI}?{m}l" for m in _ALTERNATE_SCREENS if self.dec_modes.get(m)]
        again = [seq for on, seq in ((self.charset, _CHARSET_RESET), (self.sgr, _SGR_RESET)) if on]
        again += [f"{CSI}{prefix}{mode}l" for prefix, mode in sorted(self.ever_on)]
        return "".join(
            [*self.modes_to_restore(), *(seq for on, seq in undo if on), *leave]
            + (again if leave else [])
        )


class TerminalGuard:
    """A streaming filter from the agent's terminal bytes to bytes safe for the person's."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._state = _State.GROUND
        self._held = ""  # a CSI's parameters or an ESC's intermediates, at most MAX_CSI
        self._screen = _Screen()
        self.asked = False  # a query passed: the terminal's answer may still be on its way

    @property
    def interactive(self) -> bool:
        return self.mode is Mode.INTERACTIVE

    def feed(self, data: bytes) -> bytes:
        """The safe bytes for the next chunk of the stream (a sequence may span chunks)."""
        return _without_bidi_controls(self._filter(self._decoder.decode(data)).encode("utf-8"))

    def finish(self) -> bytes:
        """At the end of the stream: what is left (an incomplete sequence is dropped), then
        `restore()`."""
        left = self._filter(self._decoder.decode(b"", final=True)).encode()
        return _without_bidi_controls(left) + self.restore()

    def restore(self) -> bytes:
        """Sequences that undo what the agent turned on, so the person's shell is usable."""
        undo = self._screen.restore()
        self._screen = _Screen()
        return undo.encode()

    # -- the state machine (after the DEC parser, vt100.net/emu/dec_ansi_parser) ----------------
    def _filter(self, text: str) -> str:
        out: list[str] = []
        index, end = 0, len(text)
        while index < end:
            if self._state is _State.GROUND:
                # The common cases at once: a run of text, a whole CSI.
                token = _GROUND_TOKEN.match(text, index)
                if token:
                    run, held, final = token.groups()
                    if run:
                        out.append(run)
                    else:
                        sequence = self._csi_verdict(held, final)
                        if sequence is not None:
                            out.append(CSI + sequence)
                    index = token.end()
                    continue
            elif self._state is _State.STRING:  # dropped as it comes: nothing is held
                stop = _STRING_END.search(text, index)
                if stop is None:
                    break
                index = stop.start()
            if not self._anywhere(text[index]):
                self._step(text[index], out)
            index += 1
        return "".join(out)

    def _anywhere(self, char: str) -> bool:
        """The transitions every state makes (ESC, CAN/SUB and C1 controls); True if taken."""
        if char == ESC:
            self._state = _State.ESCAPE
        elif char in _CANCEL or char == _ST or (char == "\x07" and self._state is _State.STRING):
            self._state = _State.GROUND
        elif char == _C1_CSI:  # no TUI writes C1: what it introduces is dropped whole
            self._state = _State.CSI_IGNORE
        elif char in _C1_STRINGS:
            self._state = _State.STRING
        elif not "\x80" <= char <= "\x9f":
            return False
        return True  # another C1 control (IND, NEL, RI...): dropped

    def _step(self, char: str, out: list[str]) -> None:
        """One character that is not plain text in the ground state, nor an `_anywhere` one."""
        if char < " ":  # a C0 control inside or outside a sequence is executed on its own
            if char in _PASSED_C0:
                out.append(char)
        elif char == "\x7f" or self._state in (_State.GROUND, _State.STRING):
            pass
        elif char > "~" and self._state is not _State.CSI_IGNORE:
            self._state = _State.GROUND  # not a sequence character: the sequence is dropped
            out.append(char)
        elif self._state is _State.ESCAPE:
            self._escape(char, out)
        elif self._state is _State.ESCAPE_INTERMEDIATE:
            self._escape_intermediate(char, out)
        elif self._state is _State.CSI:
            self._csi(char, out)
        elif char >= "@":  # CSI_IGNORE: up to the final byte
            self._state = _State.GROUND

    def _enter(self, state: _State) -> None:
        self._state, self._held = state, ""

    def _escape(self, char: str, out: list[str]) -> None:
        if char == "[":
            self._enter(_State.CSI)
        elif char in _ESC_STRINGS:
            self._state = _State.STRING
        elif " " <= char <= "/":
            self._enter(_State.ESCAPE_INTERMEDIATE)
            self._held = char
        else:
            self._state = _State.GROUND
            if char in _ESCAPES or (char in _ESCAPES_INTERACTIVE and self.interactive):
                out.append(ESC + char)
                if char in _ESCAPES_INTERACTIVE:
                    self._screen.keypad = char == "="

    def _escape_intermediate(self, char: str, out: list[str]) -> None:
        if " " <= char <= "/":
            self._held = (self._held + char)[: _MAX_ESC_INTERMEDIATES + 1]
            return
        self._state = _State.GROUND
        sequence = self._held + char
        if sequence in _CHARSETS:
            out.append(ESC + sequence)
            self._screen.charset = self._screen.charset or sequence[1] == "0"

    def _csi(self, char: str, out: list[str]) -> None:
        if " " <= char <= "?":
            self._held += char
            if len(self._held) > MAX_CSI:
                self._state = _State.CSI_IGNORE
            return
        self._state = _State.GROUND
        sequence = self._csi_verdict(self._held, char)
        if sequence is not None:
            out.append(CSI + sequence)

    def _csi_verdict(self, held: str, final: str) -> str | None:
        """The CSI (without its introducer) to pass for the one the agent sent, or None; what it
        turns on or off is noted for `restore`."""
        verdict = _csi_verdict(held, final, self.interactive)
        if verdict is None:
            return None
        key, params = verdict
        self.asked = self.asked or key in _QUERIES
        if key not in _UNNOTED:
            self._screen.note(key, params)
        return key[0] + params + key[1] + key[2]


def _without_bidi_controls(shown: bytes) -> bytes:
    # Two fast searches first: the common text (box drawing, ⏺) has none of these prefixes.
    if b"\xe2\x80" in shown or b"\xe2\x81" in shown:
        return _BIDI_CONTROLS.sub(b"", shown)
    return shown


@functools.lru_cache(maxsize=4096)  # a TUI repeats a few hundred sequences over and over
def _csi_verdict(held: str, final: str, interactive: bool) -> tuple[_Key, str] | None:
    """The key and the parameters to pass of a CSI with these parameters and final, or None."""
    body = _CSI_BODY.fullmatch(held)
    if body is None:
        return None
    prefix, params, intermediate = body.groups()
    if any(int(n) > _MAX_NUMBER for n in re.split("[;:]", params) if n):
        return None
    key = (prefix, intermediate, final)
    if final in "hl" and not intermediate and prefix in ("", "?"):
        modes = _allowed_modes(prefix, params, interactive)
        return (key, modes) if modes else None
    pattern = _DRAWING.get(key)
    if (pattern is None or not re.fullmatch(pattern, params)) and interactive:
        pattern = _INTERACTIVE.get(key)
    if pattern is None or not re.fullmatch(pattern, params):
        return None
    if key == ("", "", "m"):
        kept = _without_conceal(params)
        return None if kept is None else (key, kept)
    if params and key[:2] == ("", "") and final in _CLAMPED:
        return key, str(min(int(params), _CLAMPED[final]))
    return key, params


def _allowed_modes(prefix: str, params: str, interactive: bool) -> str:
    """The modes of a set (h) or reset (l) that may pass, `;`-separated."""
    if prefix == "?":
        allowed = _DEC_VISUAL | _DEC_INPUT if interactive else _DEC_VISUAL
    else:
        allowed = _ANSI_MODES
    return ";".join(p for p in params.split(";") if p.isdigit() and int(p) in allowed)


_COLOUR_ARGUMENTS = {"5": 1, "2": 3}  # 38;5;N and 38;2;R;G;B: the numbers after the kind


def _plain_sub_parameters(part: str) -> bool:
    """An SGR part with sub-parameters passes only as an underline style (4:3) or a colour
    (38:5:N, 38:2:R:G:B, 38:2:CS:R:G:B): xterm.js (VS Code's terminal) reads 8:0 as 8, conceal,
    and a terminal that takes ":" for ";" would read 1:8, or a sixth colour field of 8, so."""
    fields = part.split(":")
    numbers = fields[2:]
    if fields[0] == "4":
        return len(fields) == 2 and fields[1] in ("0", "1", "2", "3", "4", "5")
    if fields[0] not in ("38", "48", "58") or len(fields) < 3:
        return False
    if fields[1] == "5":
        return len(numbers) == 1 and numbers[0].isdigit()
    if fields[1] != "2" or len(numbers) not in (3, 4) or not all(n.isdigit() for n in numbers[-3:]):
        return False
    # The colour space may be empty (38:2::R:G:B); read with ";" for ":", B is a part itself.
    return len(numbers) == 3 or (not numbers[0].strip("0123456789") and int(numbers[3]) != 8)


def _without_conceal(params: str) -> str | None:
    """SGR parameters without 8 (conceal): hidden text is copied with what a person selects,
    so a command could ride along unseen into their shell. None if nothing is left."""
    parts, kept, index = params.split(";"), [], 0
    while index < len(parts):
        part = parts[index]
        if part in ("38", "48", "58") and index + 1 < len(parts):
            taken = 2 + _COLOUR_ARGUMENTS.get(parts[index + 1], -1)
            kept += parts[index : index + taken]
            index += max(taken, 1)
            continue
        if ":" in part:  # sub-parameters: only the forms every terminal reads alike
            if _plain_sub_parameters(part):
                kept.append(part)
        elif not (part.isdigit() and int(part) == 8):
            kept.append(part)
        index += 1
    return ";".join(kept) if kept else None
