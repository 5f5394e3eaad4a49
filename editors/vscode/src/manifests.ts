/**
 * Which bottle.toml a palette command means when no code lens said so. Pure: the caller
 * passes the active editor's path and the workspace's bottle.toml files.
 */

export const MANIFEST_FILE_NAME = "bottle.toml";
/** The manifests a workspace is searched for. */
export const MANIFEST_GLOB = `**/${MANIFEST_FILE_NAME}`;
/** The language client's document selector patterns (the `bottle-toml` language's files too). */
export const MANIFEST_GLOBS = [MANIFEST_GLOB, `**/*.${MANIFEST_FILE_NAME}`];

export function isManifestPath(fsPath: string): boolean {
  const base = fsPath.split(/[\\/]/).pop() ?? "";
  return base === MANIFEST_FILE_NAME || base.endsWith(`.${MANIFEST_FILE_NAME}`);
}

export type ManifestChoice<T> =
  | { kind: "one"; manifest: T }
  | { kind: "pick"; manifests: T[] }
  | { kind: "none" };

/**
 * The active editor's manifest wins; otherwise the only one in the workspace; otherwise the
 * user picks (sorted by path so the list is stable).
 */
export function chooseManifest<T>(
  active: T | undefined,
  inWorkspace: readonly T[],
  pathOf: (manifest: T) => string,
): ManifestChoice<T> {
  if (active !== undefined && isManifestPath(pathOf(active))) return { kind: "one", manifest: active };
  if (inWorkspace.length === 0) return { kind: "none" };
  if (inWorkspace.length === 1) return { kind: "one", manifest: inWorkspace[0] };
  const sorted = [...inWorkspace].sort((a, b) => pathOf(a).localeCompare(pathOf(b)));
  return { kind: "pick", manifests: sorted };
}
