/**
 * Checks, before the language client spawns anything, that the chosen server command can run,
 * so a missing server becomes one clear message instead of a crash loop.
 */
import { execFile } from "node:child_process";
import { SAFE_PATH, SERVER_MODULE, SERVER_WORKING_DIRECTORY, findOnPath, type ServerLaunch } from "./serverCommand";

const PROBE_TIMEOUT_MS = 20_000;

/** A reason the launch cannot work, or undefined when it looks runnable. */
export async function probeServerLaunch(
  launch: ServerLaunch,
  module: string = SERVER_MODULE,
): Promise<string | undefined> {
  if (launch.source === "path") return undefined;
  if (findOnPath(launch.command) === undefined) {
    return `'${launch.command}' was not found`;
  }
  if (launch.source === "setting") return undefined;
  return new Promise((resolve) => {
    execFile(
      launch.command,
      [...SAFE_PATH, "-c", `import ${module}`],
      { timeout: PROBE_TIMEOUT_MS, cwd: SERVER_WORKING_DIRECTORY },
      (error, _stdout, stderr) => {
        if (error === null) {
          resolve(undefined);
          return;
        }
        const lastLine = stderr.trim().split("\n").pop();
        resolve(lastLine !== undefined && lastLine !== "" ? lastLine : error.message);
      },
    );
  });
}
