import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { displayText } from "../src/display";

// The same table as the engine's tests/unit/test_display.py: both doors show the same text.
describe("displayText", () => {
  const cases: [string, string][] = [
    ["git status\x1b[2K\x1b[1Arm -rf /", "git status\\x1b[2K\\x1b[1Arm -rf /"],
    ["\x1b]52;c;Y3VybCBldmls\x07", "\\x1b]52;c;Y3VybCBldmls\\x07"],
    ["ok\nID 1234 approved", "ok\\nID 1234 approved"],
    ["ok\r\x9b31m", "ok\\r\\x9b31m"],
    ["abc\u202edcba", "abc\\u202edcba"],
    ["a\u2066b\u2069\u200bc\ufeff", "a\\u2066b\\u2069\\u200bc\\ufeff"],
    ["line\u2028sep", "line\\u2028sep"],
    ["typed \\x1b", "typed \\\\x1b"],
    ["naïve café 日本 🙂", "naïve café 日本 🙂"],
    ["ok\ufe0f\u{e0101}\u3164\u115f\u034f", "ok\\ufe0f\\U000e0101\\u3164\\u115f\\u034f"],
    ["ok\u2800\u2800no", "ok\\u2800\\u2800no"],
    ["a" + " ".repeat(16) + "b", "a" + " ".repeat(16) + "b"],
    ["a" + " ".repeat(1900) + "b", "a\\x20{1900}b"],
    ["x" + "\u3000".repeat(20) + "\u2800".repeat(3) + "\u00a0y", "x\\u3000{20}\\u2800{3}\\xa0y"],
    ["typed \\x20{9}", "typed \\\\x20{9}"],
    [" ".repeat(17) + "{3}", "\\x20{17}\\x7b3}"],
    ["a \u{16fe4}b\u0301", "a \\U00016fe4b\u0301"],
    ["\u0301e\u0301", "\\u0301e\u0301"],
    ["obj\ufffc", "obj\\ufffc"],
    ["[git status](command:workbench.action.quit)", "[git status]\\x28command:workbench.action.quit)"],
    ["$(check) approved", "$\\x28check) approved"],
    ["typed ]\\x28", "typed ]\\\\x28"],
    ["a ] (b) [c]", "a ] (b) [c]"],
    ["\udc00 lone", "\\udc00 lone"],
    ["\u{f0000}", "\\U000f0000"],
  ];
  for (const [hostile, shown] of cases) {
    it(`shows ${JSON.stringify(hostile)} as ${JSON.stringify(shown)}`, () => {
      assert.equal(displayText(hostile), shown);
    });
  }

  it("cuts long text with a marker, counting characters not UTF-16 units", () => {
    assert.equal(displayText("🙂".repeat(30), 10), "🙂".repeat(10) + "… (20 more characters)");
  });
});
