/**
 * Text from a bottle or from a bottle.toml (which the agent may have written), made safe to show
 * in a notification, a quick pick or the Bottles view. The same rules as the engine's
 * `bottle_engine.display.safe_editor_text`: one line, every control, escape, bidi and invisible
 * character shown as an escape (`\x1b`, `\n`, `\u202e`), backslashes doubled, and the `(` of
 * `](` and `$(` shown as `\x28`, because VS Code makes `[label](command:...)` in a notification a
 * link that runs a command and `$(name)` in a quick pick an icon.
 */

export const DEFAULT_LIMIT = 2000;

const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\" };
// Controls (C0, DEL, C1), format (bidi, zero-width, BOM), surrogates, private use, unassigned,
// separators, what draws nothing though it is a letter or mark (variation selectors, Hangul
// fillers), and what is drawn as an empty cell (the braille blank, the object replacement
// character): runs of them hid the start of a text.
const UNSAFE =
  /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800\ufffc]$/u;
// A combining mark on a blank, or on nothing, is shown as its escape: one that draws nothing
// broke a run of blanks into runs too short to be counted.
const MARK = /^[\p{Mn}\p{Me}]$/u;
const BLANK = /^[\p{Zs}\u2800\ufffc]$/u;
const EDITOR_SYNTAX = /([\]$])\(/g;
// A run of blanks longer than BLANK_RUN is shown as each blank's escape with its count
// (`\x20{1900}`), as the engine's display.py does: a run as long as it is wraps into empty rows.
export const BLANK_RUN = 16;
const LONG_BLANK_RUN = new RegExp(`[\\p{Zs}\\u2800\\ufffc]{${BLANK_RUN + 1},}`, "gu");
const SAME_CHARACTER = /(.)\1*/gsu;

function escape(char: string): string {
  const short = SHORT_ESCAPES[char];
  if (short !== undefined) return short;
  if (!UNSAFE.test(char)) return char;
  return codeEscape(char.codePointAt(0) ?? 0);
}

function codeEscape(code: number): string {
  if (code <= 0xff) return `\\x${code.toString(16).padStart(2, "0")}`;
  if (code <= 0xffff) return `\\u${code.toString(16).padStart(4, "0")}`;
  return `\\U${code.toString(16).padStart(8, "0")}`;
}

/** Each character as `escape` shows it; a mark on a blank, or on nothing, as its escape. */
function escaped(segment: string): string {
  let shown = "";
  let onBlank = true;
  for (const char of segment) {
    const mark = MARK.test(char);
    shown += mark && onBlank ? codeEscape(char.codePointAt(0) ?? 0) : escape(char);
    if (!mark) onBlank = BLANK.test(char);
  }
  return shown;
}

/** A run of one blank character as its escape and, past one, its count: `\x20{1900}`. */
function counted(same: string): string {
  const characters = Array.from(same);
  return codeEscape(same.codePointAt(0) ?? 0) + (characters.length > 1 ? `{${characters.length}}` : "");
}

export function displayText(value: unknown, limit: number = DEFAULT_LIMIT): string {
  const characters = Array.from(typeof value === "string" ? value : String(value));
  const keptCharacters = characters.slice(0, limit);
  const kept = keptCharacters.join("");
  let shown = "";
  let start = 0;
  for (const run of kept.matchAll(LONG_BLANK_RUN)) {
    shown += escaped(kept.slice(start, run.index));
    shown += Array.from(run[0].matchAll(SAME_CHARACTER), ([same]) => counted(same)).join("");
    start = run.index + run[0].length;
    // A count the agent typed after ours would read as ours.
    if (kept.startsWith("{", start)) {
      shown += codeEscape(0x7b);
      start += 1;
    }
  }
  shown += escaped(kept.slice(start));
  const left = characters.length - keptCharacters.length;
  if (left > 0) shown += `… (${left} more characters)`;
  return shown.replace(EDITOR_SYNTAX, "$1\\x28");
}
