// Loaded with `node --require` before the tests: makes `require("vscode")` return the fake
// in ./fake-vscode, since the real module exists only inside an editor's extension host.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- patch the module object itself, not an ES namespace copy of it
import Module = require("node:module");
import * as path from "node:path";

const fakePath = path.join(__dirname, "fake-vscode.js");
const moduleWithResolver = Module as unknown as {
  _resolveFilename: (this: unknown, request: string, ...rest: unknown[]) => string;
};
const originalResolve = moduleWithResolver._resolveFilename;
moduleWithResolver._resolveFilename = function (request: string, ...rest: unknown[]): string {
  if (request === "vscode") return fakePath;
  return originalResolve.call(this, request, ...rest);
};
