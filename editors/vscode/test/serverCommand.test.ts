import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import {
  ServerSettingError,
  findOnPath,
  missingServerAdvice,
  parseConfiguredCommand,
  resolveServerLaunch,
  splitCommandLine,
} from "../src/serverCommand";
import { probeServerLaunch } from "../src/serverProbe";

const none = {
  configuredCommand: undefined,
  configuredPython: undefined,
  selectedInterpreter: undefined,
  executableOnPath: undefined,
};

describe("choosing the server command", () => {
  it("uses the configured command first, as an array or a command line", () => {
    assert.deepEqual(
      resolveServerLaunch({ ...none, configuredCommand: ["/opt/bb/bin/bottle-lsp", "--log", "x y"], executableOnPath: "/usr/bin/bottle-lsp" }),
      { command: "/opt/bb/bin/bottle-lsp", args: ["--log", "x y"], source: "setting" },
    );
    assert.deepEqual(resolveServerLaunch({ ...none, configuredCommand: "uv run 'bottle lsp'" }), {
      command: "uv",
      args: ["run", "bottle lsp"],
      source: "setting",
    });
  });

  it("prefers bottle-lsp on PATH over any interpreter", () => {
    assert.deepEqual(
      resolveServerLaunch({ ...none, executableOnPath: "/usr/local/bin/bottle-lsp", configuredPython: "/venv/bin/python" }),
      { command: "/usr/local/bin/bottle-lsp", args: [], source: "path" },
    );
  });

  it("falls back to python -m bottle_lsp: setting, then the Python extension, then python3", () => {
    const viaSetting = resolveServerLaunch({ ...none, configuredPython: "/venv/bin/python", selectedInterpreter: "/other/python" });
    assert.deepEqual(viaSetting, { command: "/venv/bin/python", args: ["-m", "bottle_lsp"], source: "python", python: "/venv/bin/python" });
    assert.equal(resolveServerLaunch({ ...none, selectedInterpreter: "/sel/python" }).command, "/sel/python");
    assert.equal(resolveServerLaunch({ ...none, configuredPython: "  " }).command, "python3");
  });

  it("treats an empty setting as unset", () => {
    assert.equal(parseConfiguredCommand(""), undefined);
    assert.equal(parseConfiguredCommand([]), undefined);
    assert.equal(parseConfiguredCommand(null), undefined);
  });

  it("rejects a setting that is not a command, naming the setting", () => {
    assert.throws(() => parseConfiguredCommand(42), (error: Error) => {
      assert.ok(error instanceof ServerSettingError);
      assert.match(error.message, /botBottle\.server\.command/);
      return true;
    });
    assert.throws(() => parseConfiguredCommand(["bottle-lsp", 1]), ServerSettingError);
    assert.throws(() => splitCommandLine('bottle-lsp "--oops'), /unclosed " quote/);
  });

  it("splits command lines like a shell for quotes and escapes", () => {
    assert.deepEqual(splitCommandLine(`  a  "b c" 'd "e"' f\\ g ""`), ["a", "b c", 'd "e"', "f g", ""]);
  });
});

describe("finding bottle-lsp on PATH", () => {
  it("returns the first executable match in PATH order", () => {
    const executables = new Set(["/second/bottle-lsp", "/third/bottle-lsp"]);
    const found = findOnPath("bottle-lsp", { PATH: "/first:/second:/third" }, "linux", (file) => executables.has(file));
    assert.equal(found, "/second/bottle-lsp");
  });

  it("tries PATHEXT suffixes on Windows", () => {
    const found = findOnPath("bottle-lsp", { Path: "C:\\py\\Scripts", PATHEXT: ".EXE;.CMD" }, "win32", (file) => file === "C:\\py\\Scripts\\bottle-lsp.EXE");
    assert.equal(found, "C:\\py\\Scripts\\bottle-lsp.EXE");
  });

  it("finds a real executable and skips a non-executable file", () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "bb-path-"));
    try {
      fs.writeFileSync(path.join(directory, "bottle-lsp"), "#!/bin/sh\n", { mode: 0o644 });
      assert.equal(findOnPath("bottle-lsp", { PATH: directory }), undefined);
      fs.chmodSync(path.join(directory, "bottle-lsp"), 0o755);
      assert.equal(findOnPath("bottle-lsp", { PATH: directory }), path.join(directory, "bottle-lsp"));
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("a missing server", () => {
  it("tells the pip command for the interpreter that was tried", () => {
    const advice = missingServerAdvice(
      { command: "/venv/bin/python", args: ["-m", "bottle_lsp"], source: "python", python: "/venv/bin/python" },
      "No module named 'bottle_lsp'",
    );
    assert.equal(advice.installCommand, "/venv/bin/python -m pip install bot-bottle");
    assert.match(advice.message, /not installed/);
    assert.match(advice.message, /No module named 'bottle_lsp'/);
    assert.match(advice.message, /\/venv\/bin\/python -m pip install bot-bottle/);
  });

  it("points at the setting when the configured command fails", () => {
    const advice = missingServerAdvice({ command: "/nope/bottle-lsp", args: [], source: "setting" }, "'/nope/bottle-lsp' was not found");
    assert.match(advice.message, /botBottle\.server\.command/);
    assert.match(advice.message, /pip install bot-bottle/);
  });

  it("is detected before start: a missing module or interpreter gives the reason", async () => {
    const python = findOnPath("python3");
    if (python === undefined) return;
    const launch = { command: python, args: ["-m", "bottle_lsp"], source: "python" as const, python };
    assert.equal(await probeServerLaunch(launch, "json"), undefined);
    assert.match((await probeServerLaunch(launch, "no_such_module_for_bot_bottle")) ?? "", /No module named 'no_such_module_for_bot_bottle'/);
    const missing = { ...launch, command: "/nonexistent/python3" };
    assert.equal(await probeServerLaunch(missing), "'/nonexistent/python3' was not found");
  });
});
