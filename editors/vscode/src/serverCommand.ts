/**
 * How to start `bottle-lsp`: pure decision logic, no `vscode` import.
 *
 * Order (first that applies wins):
 *   1. `botBottle.server.command` (array, or a string split like a shell would);
 *   2. `bottle-lsp` found on PATH;
 *   3. `<python> -P -m bottle_lsp`, python = `botBottle.server.python`, else the interpreter the
 *      Python extension has selected unless it lies in a workspace folder, else `python3`.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const SERVER_EXECUTABLE = "bottle-lsp";
export const SERVER_MODULE = "bottle_lsp";
export const PACKAGE_NAME = "bot-bottle";
export const DEFAULT_PYTHON = "python3";
/**
 * `-P` (Python 3.11+, which bot-bottle needs anyway): leave the working directory off sys.path.
 * The language client starts the server in the workspace folder, whose files the agent may
 * have written: with `-m` or `-c` alone, a `bottle_lsp/` or `pygls/` there would be imported.
 */
export const SAFE_PATH = ["-P"];

export type ServerSource = "setting" | "path" | "python";

export interface ServerLaunch {
  command: string;
  args: string[];
  source: ServerSource;
  /** The interpreter used when `source` is "python". */
  python?: string;
  /** The Python extension's interpreter, when it was passed over as the workspace's own. */
  passedOver?: string;
}

export interface ServerLaunchInputs {
  /** Raw value of `botBottle.server.command`. */
  configuredCommand: unknown;
  /** Raw value of `botBottle.server.python`. */
  configuredPython: unknown;
  /** The Python extension's selected interpreter, when that extension is installed. */
  selectedInterpreter: string | undefined;
  /** The open workspace folders (absolute paths): what a pulled branch may have written. */
  workspaceFolders?: readonly string[];
  /** Absolute path of `bottle-lsp` on PATH, if any. */
  executableOnPath: string | undefined;
}

/**
 * Where the server, its probe and the Attach / Logs terminals start: the extension's own
 * directory. vscode-languageclient would start the server in the first workspace folder (a
 * terminal starts there too), a branch the agent wrote, and a
 * working directory reaches further than `-P` keeps it: Python puts an empty or relative
 * PYTHONPATH entry (`export PYTHONPATH=$PYTHONPATH:/opt/x` with it unset gives ":/opt/x") on
 * sys.path as a place under the working directory, ahead of site-packages, so the branch's
 * `bottle_lsp/` ran in place of the installed one, through `bottle-lsp` and `-m` alike.
 */
export const SERVER_WORKING_DIRECTORY = __dirname;

/** How the language client spawns `launch` (vscode-languageclient's `Executable`). */
export function serverExecutable(launch: ServerLaunch): {
  command: string;
  args: string[];
  options: { cwd: string };
} {
  return { command: launch.command, args: launch.args, options: { cwd: SERVER_WORKING_DIRECTORY } };
}

/** Raised for a setting that cannot describe a command; the message names the setting. */
export class ServerSettingError extends Error {}

export function resolveServerLaunch(inputs: ServerLaunchInputs): ServerLaunch {
  const configured = parseConfiguredCommand(inputs.configuredCommand);
  if (configured !== undefined) {
    const [command, ...args] = configured;
    return { command, args, source: "setting" };
  }
  if (inputs.executableOnPath !== undefined) {
    return { command: inputs.executableOnPath, args: [], source: "path" };
  }
  const configuredPython = nonBlank(inputs.configuredPython);
  const selected = nonBlank(inputs.selectedInterpreter);
  const base = { args: [...SAFE_PATH, "-m", SERVER_MODULE], source: "python" as const };
  if (configuredPython !== undefined) return { ...base, command: configuredPython, python: configuredPython };
  // The Python extension picks a `.venv` it finds in the workspace by itself; a branch the agent
  // wrote holds that venv's python and site-packages (a `.pth` file there runs at start).
  if (selected !== undefined && isInsideAny(selected, inputs.workspaceFolders ?? [])) {
    return { ...base, command: DEFAULT_PYTHON, python: DEFAULT_PYTHON, passedOver: selected };
  }
  const python = selected ?? DEFAULT_PYTHON;
  return { ...base, command: python, python };
}

/**
 * Is `file` in one of `folders`, as written or once its links are followed (a link outside to
 * a venv inside is the workspace's all the same)?
 */
export function isInsideAny(file: string, folders: readonly string[], realpath: (file: string) => string = realpathOrSelf): boolean {
  const candidates = [path.resolve(file), realpath(path.resolve(file))];
  return folders.some((folder) => {
    const roots = [path.resolve(folder), realpath(path.resolve(folder))];
    return roots.some((root) =>
      candidates.some((candidate) => {
        const relative = path.relative(root, candidate);
        return relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
      }),
    );
  });
}

function realpathOrSelf(file: string): string {
  try {
    return fs.realpathSync.native(file);
  } catch {
    return file;
  }
}

/**
 * `undefined` when the setting is unset/empty (use the defaults); otherwise a non-empty argv.
 */
export function parseConfiguredCommand(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") {
    const argv = splitCommandLine(value);
    return argv.length > 0 ? argv : undefined;
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    if (value.every((part) => typeof part === "string") && (value[0]).trim() !== "") {
      return value;
    }
  }
  throw new ServerSettingError(
    `botBottle.server.command must be a command line string or an array of strings ` +
      `(for example ["bottle-lsp"]), not ${JSON.stringify(value)}. Fix it in the settings.`,
  );
}

/** Splits a command line the way a POSIX shell would for plain words and quotes. */
export function splitCommandLine(line: string): string[] {
  const argv: string[] = [];
  let current = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let index = 0; index < line.length; index++) {
    const char = line[index];
    if (quote !== undefined) {
      if (char === quote) quote = undefined;
      else if (char === "\\" && quote === '"' && index + 1 < line.length) current += line[++index];
      else current += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      inWord = true;
    } else if (char === "\\" && index + 1 < line.length) {
      current += line[++index];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) argv.push(current);
      current = "";
      inWord = false;
    } else {
      current += char;
      inWord = true;
    }
  }
  if (quote !== undefined) {
    throw new ServerSettingError(
      `botBottle.server.command has an unclosed ${quote} quote: ${line}. Fix it in the settings.`,
    );
  }
  if (inWord) argv.push(current);
  return argv;
}

function nonBlank(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

/**
 * The launch with a bare command name (`python3`, or a setting's first word) replaced by where
 * it is on PATH. The language client starts the server in the workspace folder, and a bare name
 * is looked up only once there: a relative PATH entry (`.`, `bin`) would find a `python3` the
 * workspace holds. Unchanged when the name is not found (the probe then says so).
 */
export function withAbsoluteCommand(launch: ServerLaunch, env: NodeJS.ProcessEnv = process.env): ServerLaunch {
  const found = findOnPath(launch.command, env);
  if (found === undefined || found === launch.command) return launch;
  return { ...launch, command: found, ...(launch.python === launch.command ? { python: found } : {}) };
}

/**
 * Looks `name` up on PATH like a shell does; `undefined` when it is not there. Relative PATH
 * entries are passed over (as Go's exec.LookPath does): they name a place in whatever folder the
 * command runs from, the workspace the agent may have written.
 */
export function findOnPath(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  isExecutable: (file: string) => boolean = isExecutableFile,
): string | undefined {
  if (name.includes("/") || (platform === "win32" && name.includes("\\"))) {
    return isExecutable(name) ? name : undefined;
  }
  const pathVar = env.PATH ?? env.Path ?? "";
  const separator = platform === "win32" ? ";" : ":";
  const extensions =
    platform === "win32" ? ["", ...(env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";")] : [""];
  const join = (...parts: string[]): string =>
    platform === "win32" ? path.win32.join(...parts) : path.posix.join(...parts);
  const isAbsolute = (directory: string): boolean =>
    platform === "win32" ? path.win32.isAbsolute(directory) : path.posix.isAbsolute(directory);
  for (const directory of pathVar.split(separator)) {
    if (!isAbsolute(directory)) continue;
    for (const extension of extensions) {
      const candidate = join(directory, name + extension);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The user-facing text for a server that cannot be started, with the command that fixes it. */
export interface MissingServerAdvice {
  message: string;
  installCommand: string;
}

export function missingServerAdvice(launch: ServerLaunch, reason: string): MissingServerAdvice {
  const tried = [launch.command, ...launch.args].map(quoteForDisplay).join(" ");
  if (launch.source === "setting") {
    return {
      message:
        `Bot Bottle: the language server command from botBottle.server.command (${tried}) ` +
        `could not be started: ${reason}. Fix the setting, or clear it and install the ` +
        `server with: pip install ${PACKAGE_NAME}`,
      installCommand: `pip install ${PACKAGE_NAME}`,
    };
  }
  const python = launch.python ?? DEFAULT_PYTHON;
  const installCommand = `${quoteForDisplay(python)} -m pip install ${PACKAGE_NAME}`;
  return {
    message:
      `Bot Bottle: the language server is not installed (${SERVER_EXECUTABLE} is not on PATH ` +
      `and ${tried} failed: ${reason}). Install it with: ${installCommand}`,
    installCommand,
  };
}

function quoteForDisplay(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
