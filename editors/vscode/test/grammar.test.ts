import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import * as oniguruma from "vscode-oniguruma";
import * as textmate from "vscode-textmate";

const root = path.join(__dirname, "..", "..");
const grammarPath = path.join(root, "syntaxes", "bottle-toml.tmLanguage.json");

const SAMPLE = `# the team's bottle
[agents.dev]
bottle = "web"  # runs in web
command = ["bash", "-c", 'echo "hi"']
cpus = 1.5

[bottles.web.egress]
allow = [
    "api.example.com",  # the API
    "*.npmjs.org",
]
ask = true
limits = { pids = 256, "memory" = "1g" }

[[bottles.web.git]]
url = """
ssh://git@example.invalid/me/repo.git"""
`;

let grammar: textmate.IGrammar;

/** [text, innermost scope] of every token on every line. */
function tokens(text: string): [string, string][][] {
  let state = textmate.INITIAL;
  return text.split("\n").map((line) => {
    const result = grammar.tokenizeLine(line, state);
    state = result.ruleStack;
    return result.tokens.map((t) => [line.slice(t.startIndex, t.endIndex), t.scopes[t.scopes.length - 1]] as [string, string]);
  });
}

function scopeOf(text: string, token: string): string {
  for (const line of tokens(text)) {
    const found = line.find(([value]) => value === token);
    if (found !== undefined) return found[1];
  }
  throw new Error(`no token ${JSON.stringify(token)}`);
}

describe("the bottle.toml grammar", () => {
  before(async () => {
    const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm"));
    await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
    const registry = new textmate.Registry({
      onigLib: Promise.resolve({
        createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
        createOnigString: (s: string) => new oniguruma.OnigString(s),
      }),
      loadGrammar: async () => textmate.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath),
    });
    const loaded = await registry.loadGrammar("source.toml.bottle");
    assert.ok(loaded);
    grammar = loaded;
  });

  it("colours tables, keys, strings, numbers, booleans and comments with TOML scopes", () => {
    assert.equal(scopeOf(SAMPLE, " the team's bottle"), "comment.line.number-sign.toml");
    assert.equal(scopeOf(SAMPLE, "agents"), "entity.name.tag.table.toml");
    assert.equal(scopeOf(SAMPLE, "git"), "entity.name.tag.table.toml");
    assert.equal(scopeOf(SAMPLE, "bottle"), "support.type.property-name.toml");
    assert.equal(scopeOf(SAMPLE, "web"), "string.quoted.double.basic.line.toml");
    assert.equal(scopeOf(SAMPLE, "1.5"), "constant.numeric.toml");
    assert.equal(scopeOf(SAMPLE, "true"), "constant.language.boolean.toml");
    assert.equal(scopeOf(SAMPLE, "echo \"hi\""), "string.quoted.single.literal.line.toml");
    assert.equal(scopeOf(SAMPLE, "pids"), "support.type.property-name.toml");
  });

  it("keeps a multi-line array's strings and comments apart", () => {
    assert.equal(scopeOf(SAMPLE, "api.example.com"), "string.quoted.double.basic.line.toml");
    assert.equal(scopeOf(SAMPLE, " the API"), "comment.line.number-sign.toml");
    assert.equal(scopeOf(SAMPLE, "*.npmjs.org"), "string.quoted.double.basic.line.toml");
    assert.equal(scopeOf(SAMPLE, "ask"), "support.type.property-name.toml", "the array closed");
  });

  it("reads a multi-line basic string to its closing quotes", () => {
    assert.equal(scopeOf(SAMPLE, 'ssh://git@example.invalid/me/repo.git'), "string.quoted.triple.basic.block.toml");
  });

  // VS Code tokenizes lines of up to 20000 characters (editor.maxTokenizationLineLength) and
  // cannot stop inside one regex search. A pattern that opens with a lookahead, or puts one after
  // a repetition, is tried at every place of a line and scans on from each: the square of the
  // line's length. A key's lookahead took 2 to 3.6 s for one line of a bottle.toml a repository
  // holds that no `=` ends, and the value's end (`x = ` then 20000 spaces and `1`) 3.6 s: a
  // tokenizer busy for minutes on a file of such lines. Each such pattern must start only where
  // it can match (the line's start, or a lookbehind), which makes its tries linear in all.
  it("opens no lookahead at every place of a line", () => {
    const unanchored: string[] = [];
    const visit = (node: unknown, where: string): void => {
      if (Array.isArray(node)) node.forEach((child, index) => visit(child, `${where}[${index}]`));
      else if (typeof node === "object" && node !== null) {
        for (const [key, value] of Object.entries(node)) {
          if (["begin", "match", "end"].includes(key) && typeof value === "string") {
            const scansOn = value.startsWith("(?=") || /[+*}]\)*\(\?[=!]/.test(value);
            const anchored = value.startsWith("^") || value.startsWith("\\G") || value.startsWith("(?<");
            if (scansOn && !anchored) unanchored.push(`${where}.${key}: ${value}`);
          } else visit(value, `${where}.${key}`);
        }
      }
    };
    visit(JSON.parse(fs.readFileSync(grammarPath, "utf8")), "grammar");
    assert.deepEqual(unanchored, []);
  });

  it("still colours keys and values on the long lines that once cost seconds", () => {
    const spaces = " ".repeat(19990);
    assert.equal(scopeOf(`x = ${spaces}1\n`, "1"), "constant.numeric.toml");
    assert.equal(scopeOf(`x = ${spaces}1\n`, "x"), "support.type.property-name.toml");
    assert.equal(scopeOf(`x = [${spaces}1]\n`, "1"), "constant.numeric.toml");
    assert.equal(scopeOf(`x = {${spaces}a = 1}\n`, "a"), "support.type.property-name.toml");
    assert.equal(scopeOf(`${"a.".repeat(9990)}b = 1\n`, "b"), "support.type.property-name.toml");
  });

  it("does not treat a # inside a string as a comment", () => {
    assert.equal(scopeOf('tag = "a#b"\n', "a#b"), "string.quoted.double.basic.line.toml");
  });
});
