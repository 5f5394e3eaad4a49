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
// Controls (C0, DEL, C1), format (bidi, zero-width, BOM), surrogates, private use, separators,
// what draws nothing though it is a letter or mark (variation selectors, Hangul fillers), and
// the braille blank, drawn as an empty cell (runs of it hid the start of a text).
const UNSAFE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]$/u;
const EDITOR_SYNTAX = /([\]$])\(/g;

function escape(char: string): string {
  const short = SHORT_ESCAPES[char];
  if (short !== undefined) return short;
  if (!UNSAFE.test(char)) return char;
  const code = char.codePointAt(0) ?? 0;
  if (code <= 0xff) return `\\x${code.toString(16).padStart(2, "0")}`;
  if (code <= 0xffff) return `\\u${code.toString(16).padStart(4, "0")}`;
  return `\\U${code.toString(16).padStart(8, "0")}`;
}

export function displayText(value: unknown, limit: number = DEFAULT_LIMIT): string {
  const characters = Array.from(typeof value === "string" ? value : String(value));
  const kept = characters.slice(0, limit);
  let shown = kept.map(escape).join("");
  if (kept.length < characters.length) shown += `… (${characters.length - kept.length} more characters)`;
  return shown.replace(EDITOR_SYNTAX, "$1\\x28");
}
