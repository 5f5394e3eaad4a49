import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
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
  serverExecutable,
  splitCommandLine,
  withAbsoluteCommand,
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
    assert.deepEqual(viaSetting, { command: "/venv/bin/python", args: ["-P", "-m", "bottle_lsp"], source: "python", python: "/venv/bin/python" });
    assert.equal(resolveServerLaunch({ ...none, selectedInterpreter: "/sel/python" }).command, "/sel/python");
    assert.equal(resolveServerLaunch({ ...none, configuredPython: "  " }).command, "python3");
  });

  it("passes over the Python extension's interpreter in a workspace folder, unless the person set it", () => {
    const workspaceFolders = ["/ws"];
    const inside = "/ws/..venv/bin/python";
    assert.deepEqual(resolveServerLaunch({ ...none, selectedInterpreter: inside, workspaceFolders }), {
      command: "python3",
      args: ["-P", "-m", "bottle_lsp"],
      source: "python",
      python: "python3",
      passedOver: inside,
    });
    for (const outside of ["/usr/bin/python3", "/wsx/bin/python", "/ws/../venv/bin/python"]) {
      assert.equal(resolveServerLaunch({ ...none, selectedInterpreter: outside, workspaceFolders }).command, outside);
    }
    const chosen = { ...none, configuredPython: "/ws/.venv/bin/python", selectedInterpreter: inside, workspaceFolders };
    assert.deepEqual(resolveServerLaunch(chosen).passedOver, undefined);
    assert.equal(resolveServerLaunch(chosen).command, "/ws/.venv/bin/python");
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

  it("passes over relative entries: they name a place in the workspace the server starts in", () => {
    const executables = new Set(["bin/bottle-lsp", "./bottle-lsp", "/usr/bin/bottle-lsp"]);
    const found = findOnPath("bottle-lsp", { PATH: "bin:.::/usr/bin" }, "linux", (file) => executables.has(file));
    assert.equal(found, "/usr/bin/bottle-lsp");
    assert.equal(findOnPath("bottle-lsp", { PATH: "bin:." }, "linux", (file) => executables.has(file)), undefined);
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

describe("a workspace's own Python files", () => {
  // The language client starts the server in the first workspace folder, and `python -m`
  // (like `-c`) puts the working directory first on sys.path: a `bottle_lsp/` (or a `pygls/`)
  // in a branch the agent wrote would run on the host in place of the server.
  const python = findOnPath("python3");
  const hostileWorkspace = (): { dir: string; marker: string } => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bb-workspace-"));
    const marker = path.join(dir, "ran-on-the-host");
    fs.mkdirSync(path.join(dir, "bottle_lsp"));
    const payload = `open(${JSON.stringify(marker)}, "w").write("x")\nraise SystemExit(3)\n`;
    for (const name of ["__init__.py", "__main__.py"]) fs.writeFileSync(path.join(dir, "bottle_lsp", name), payload);
    return { dir, marker };
  };

  it("are not imported by the server the extension starts there", (t) => {
    if (python === undefined) return t.skip("no python3 on PATH");
    const { dir, marker } = hostileWorkspace();
    const launch = resolveServerLaunch({ ...none, selectedInterpreter: python });
    spawnSync(launch.command, launch.args, { cwd: dir, input: "", timeout: 60_000 });
    assert.equal(fs.existsSync(marker), false, `${launch.command} ${launch.args.join(" ")} ran the workspace's bottle_lsp`);
  });

  it("are not run in place of python3 when PATH has a relative entry", (t) => {
    if (python === undefined) return t.skip("no python3 on PATH");
    const { dir, marker } = hostileWorkspace();
    const fake = path.join(dir, "python3");
    fs.writeFileSync(fake, `#!/bin/sh\necho x > ${JSON.stringify(marker)}\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `.:${process.env.PATH ?? ""}` };
    const launch = withAbsoluteCommand(resolveServerLaunch(none), env);
    assert.equal(launch.command, python);
    spawnSync(launch.command, [...launch.args.slice(0, -2), "-c", "pass"], { cwd: dir, env, timeout: 60_000 });
    assert.equal(fs.existsSync(marker), false, `${launch.command} ran the workspace's python3`);
  });

  it("are not run as the server's interpreter when the Python extension chose the workspace's", () => {
    // The Python extension selects a `.venv` it finds in the workspace by itself; the branch's
    // venv is the agent's to write (its python, or a `.pth` in its site-packages).
    const { dir, marker } = hostileWorkspace();
    const venvPython = path.join(dir, ".venv", "bin", "python");
    fs.mkdirSync(path.dirname(venvPython), { recursive: true });
    fs.writeFileSync(venvPython, `#!/bin/sh\necho x > ${JSON.stringify(marker)}\n`, { mode: 0o755 });
    const linked = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bb-link-")), "python");
    fs.symlinkSync(venvPython, linked);
    for (const selected of [venvPython, linked, path.join(dir, "sub", "..", ".venv", "bin", "python")]) {
      const inputs = { ...none, selectedInterpreter: selected, workspaceFolders: [path.join(dir, ".")] };
      const launch = resolveServerLaunch(inputs);
      spawnSync(launch.command, launch.args, { cwd: dir, input: "", timeout: 60_000 });
      assert.equal(fs.existsSync(marker), false, `${launch.command} (selected: ${selected}) is the workspace's`);
    }
  });

  // `export PYTHONPATH=$PYTHONPATH:/opt/x` with PYTHONPATH unset gives ":/opt/x": Python puts the
  // empty entry on sys.path as the working directory, ahead of site-packages and whatever -P says.
  const emptyEntry = { ...process.env, PYTHONPATH: `${path.delimiter}/nonexistent` };

  it("are not imported through an empty PYTHONPATH entry by the server, as the client starts it", (t) => {
    if (python === undefined) return t.skip("no python3 on PATH");
    const { dir, marker } = hostileWorkspace();
    for (const launch of [
      resolveServerLaunch({ ...none, selectedInterpreter: python }),
      { command: python, args: ["-c", "from bottle_lsp.__main__ import main"], source: "path" as const },
    ]) {
      const executable = serverExecutable(launch);
      // vscode-languageclient starts it in `options.cwd`, else in the first workspace folder.
      const cwd = executable.options?.cwd ?? dir;
      spawnSync(executable.command, executable.args ?? [], { cwd, env: emptyEntry, input: "", timeout: 60_000 });
      assert.equal(fs.existsSync(marker), false, `${launch.command} ${launch.args.join(" ")} in ${cwd}`);
    }
  });

  it("are not imported through an empty PYTHONPATH entry by the probe", async (t) => {
    if (python === undefined) return t.skip("no python3 on PATH");
    const { dir, marker } = hostileWorkspace();
    const before = { cwd: process.cwd(), pythonPath: process.env.PYTHONPATH };
    process.chdir(dir);
    process.env.PYTHONPATH = emptyEntry.PYTHONPATH;
    try {
      await probeServerLaunch(resolveServerLaunch({ ...none, selectedInterpreter: python }));
    } finally {
      process.chdir(before.cwd);
      if (before.pythonPath === undefined) delete process.env.PYTHONPATH;
      else process.env.PYTHONPATH = before.pythonPath;
    }
    assert.equal(fs.existsSync(marker), false, "the probe ran the workspace's bottle_lsp");
  });

  it("are not imported by the probe before the start", async (t) => {
    if (python === undefined) return t.skip("no python3 on PATH");
    const { dir, marker } = hostileWorkspace();
    const before = process.cwd();
    process.chdir(dir);
    try {
      await probeServerLaunch(resolveServerLaunch({ ...none, selectedInterpreter: python }));
    } finally {
      process.chdir(before);
    }
    assert.equal(fs.existsSync(marker), false, "the probe ran the workspace's bottle_lsp");
  });
});
