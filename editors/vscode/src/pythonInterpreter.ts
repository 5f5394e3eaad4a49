/**
 * The interpreter the Python extension (ms-python.python) has selected, read through its
 * public API. Typed structurally so the module needs neither `vscode` nor the Python
 * extension's typings at run time; every step tolerates an older or absent API.
 */

export const PYTHON_EXTENSION_ID = "ms-python.python";

interface UriLike {
  fsPath: string;
}

/** The subset of the Python extension's exported API this module reads. */
export interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: UriLike): { id: string; path: string } | undefined;
    resolveEnvironment(
      environment: { id: string; path: string } | string,
    ): Promise<{ executable?: { uri?: UriLike } } | undefined>;
  };
  settings?: {
    getExecutionDetails?(resource?: UriLike): { execCommand?: string[] | undefined };
  };
}

export interface ExtensionLike {
  isActive: boolean;
  exports: unknown;
  activate(): Thenable<unknown>;
}

export interface ExtensionRegistry {
  getExtension(id: string): ExtensionLike | undefined;
}

/** `undefined` when the Python extension is missing, fails, or has no interpreter selected. */
export async function selectedPythonInterpreter(
  extensions: ExtensionRegistry,
  resource: UriLike | undefined,
): Promise<string | undefined> {
  const extension = extensions.getExtension(PYTHON_EXTENSION_ID);
  if (extension === undefined) return undefined;
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as
      | PythonExtensionApi
      | undefined;
    if (api === undefined || api === null) return undefined;
    if (api.environments !== undefined) {
      const active = api.environments.getActiveEnvironmentPath(resource);
      if (active !== undefined) {
        const resolved = await api.environments.resolveEnvironment(active);
        const executable = resolved?.executable?.uri?.fsPath;
        if (executable !== undefined && executable !== "") return executable;
      }
    }
    const execCommand = api.settings?.getExecutionDetails?.(resource)?.execCommand;
    // A multi-word execCommand (e.g. "conda run ...") cannot take "-m bottle_lsp" safely.
    if (execCommand !== undefined && execCommand.length === 1 && execCommand[0] !== "") {
      return execCommand[0];
    }
  } catch {
    // The Python extension is optional: any failure means "no preference".
  }
  return undefined;
}
