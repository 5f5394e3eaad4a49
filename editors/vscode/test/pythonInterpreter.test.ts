import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PYTHON_EXTENSION_ID, selectedPythonInterpreter, type PythonExtensionApi } from "../src/pythonInterpreter";

function registry(api: PythonExtensionApi | undefined, options: { active?: boolean; fails?: boolean } = {}) {
  let activations = 0;
  return {
    activations: () => activations,
    getExtension(id: string) {
      if (id !== PYTHON_EXTENSION_ID || api === undefined) return undefined;
      return {
        isActive: options.active ?? false,
        exports: api,
        activate: async () => {
          activations++;
          if (options.fails) throw new Error("activation failed");
          return api;
        },
      };
    },
  };
}

describe("the Python extension's interpreter", () => {
  it("is the resolved executable of the active environment", async () => {
    const api: PythonExtensionApi = {
      environments: {
        getActiveEnvironmentPath: () => ({ id: "venv", path: "/w/.venv" }),
        resolveEnvironment: async () => ({ executable: { uri: { fsPath: "/w/.venv/bin/python" } } }),
      },
    };
    const extensions = registry(api);
    assert.equal(await selectedPythonInterpreter(extensions, undefined), "/w/.venv/bin/python");
    assert.equal(extensions.activations(), 1, "the extension is activated to read its API");
  });

  it("falls back to the older execution details API for a single-word command", async () => {
    assert.equal(await selectedPythonInterpreter(registry({ settings: { getExecutionDetails: () => ({ execCommand: ["/usr/bin/python3.12"] }) } }, { active: true }), undefined), "/usr/bin/python3.12");
    assert.equal(await selectedPythonInterpreter(registry({ settings: { getExecutionDetails: () => ({ execCommand: ["conda", "run", "-n", "x", "python"] }) } }), undefined), undefined);
  });

  it("is undefined without the extension or when it fails", async () => {
    assert.equal(await selectedPythonInterpreter(registry(undefined), undefined), undefined);
    assert.equal(await selectedPythonInterpreter(registry({}, { fails: true }), undefined), undefined);
  });
});
