/**
 * The wire contract between this extension and `bottle-lsp`.
 *
 * Everything here is plain data and validation: no `vscode` import, so the node test runner
 * can exercise it directly. The server owns the behaviour; these parsers only make sure a
 * malformed answer becomes a readable error instead of an `undefined` deep in the UI.
 */

// <generated from bottle_lsp/commands.py by scripts/update-contract: edit there>
/** `workspace/executeCommand` ids the server provides (code lenses use the same ids). */
export const ServerCommand = {
  launch: "bottle.launch",
  attach: "bottle.attach",
  stop: "bottle.stop",
  list: "bottle.list",
  logs: "bottle.logs",
  agents: "bottle.agents",
  trust: "bottle.trust",
  trustReview: "bottle.trustReview",
  activity: "bottle.activity",
  allowHost: "bottle.allowHost",
  answer: "bottle.answer",
} as const;

/** Which agent of which manifest to launch. */
export interface LaunchArgs {
  /** `file://` URI of the bottle.toml that declares the agent. */
  uri: string;
  /** The NAME of an `[agents.NAME]` table in it. */
  agent: string;
}

/** Which running bottle. */
export interface SlugArgs {
  /** The bottle's slug, as `bottle.list` names it. */
  slug: string;
}

/** Which bottle's log to follow. */
export interface LogsArgs {
  /** The bottle's slug, as `bottle.list` names it. */
  slug: string;
  /** true: the egress proxy's audit log; false: the agent's own output. */
  egress?: boolean;
}

/** Which manifest. */
export interface UriArgs {
  /** `file://` URI of the bottle.toml. */
  uri: string;
}

/** Which manifest to trust, and the content that was reviewed. */
export interface TrustArgs {
  /** `file://` URI of the bottle.toml. */
  uri: string;
  /** From `bottle.trustReview`: records only that content. Absent: the server asks. */
  fingerprint?: string;
}

/** A refused host to add to its bottle's allowlist in bottle.toml. */
export interface AllowHostArgs {
  /** The bottle that was refused, as `bottle.list` names it. */
  slug: string;
  /** The refused host name, as `bottle/activity` shows it. */
  host: string;
  /** The refused port. */
  port: number;
}

/** A pending approval request of a bottle, and the answer. */
export interface AnswerArgs {
  /** The bottle that asked, as `bottle.list` names it. */
  slug: string;
  /** The request's id, from `bottle/activity`. */
  request_id: string;
  /** true: approve; false: deny. */
  approved: boolean;
  /** The host its row shows: the answer is refused when the request asks about another. */
  host: string;
  /** The port its row shows. */
  port: number;
  /** Approve this one request only. */
  once?: boolean;
}

/** The one argument each command takes (`undefined`: none). */
export interface ServerCommandArguments {
  "bottle.launch": LaunchArgs;
  "bottle.attach": SlugArgs;
  "bottle.stop": SlugArgs;
  "bottle.list": undefined;
  "bottle.logs": LogsArgs;
  "bottle.agents": UriArgs;
  "bottle.trust": TrustArgs;
  "bottle.trustReview": UriArgs;
  "bottle.activity": undefined;
  "bottle.allowHost": AllowHostArgs;
  "bottle.answer": AnswerArgs;
}
// </generated>
export type ServerCommandId = (typeof ServerCommand)[keyof typeof ServerCommand];

export const SERVER_COMMAND_IDS: readonly ServerCommandId[] = Object.values(ServerCommand);

/** Server -> client notification (no params): a bottle started or stopped. */
export const BOTTLE_CHANGED_NOTIFICATION = "bottle/changed";

/** Server -> client notification: `BottleActivity[]` as `{bottles}`, whenever it changes. */
export const BOTTLE_ACTIVITY_NOTIFICATION = "bottle/activity";

export type EgressDecision = "allow" | "deny" | "ask";

/** One row of the Egress view: requests of a bottle to host:port that got `decision`.
 * Every text is display-safe already (the server's `safe_editor_text`). */
export interface HostActivity {
  decision: EgressDecision;
  host: string;
  port: number;
  count: number;
  bytes: number;
  /** ISO 8601 time of the newest request. */
  last: string;
  rule: string;
  reason: string;
  /** Ask requests still waiting for a person (ids for `bottle.answer`). */
  pending: string[];
  /** The `allow` entry that would have let a refused request through; null when none would. */
  allow: string | null;
}

/** A running or degraded bottle as `bottle/activity` describes it. */
export interface BottleActivity {
  slug: string;
  agent: string;
  bottle: string;
  backend: string;
  /** "runsc" (gVisor) or "runc"; "" when the backend does not say. */
  runtime: string;
  status: string;
  state: "running" | "degraded";
  /** The command that repairs a degraded bottle. */
  fix: string;
  started_at: string;
  manifest: string;
  pending: number;
  denied: number;
  allowed: number;
  /** Requests past the server's bound on distinct rows (an agent inventing host names). */
  hidden: number;
  hosts: HostActivity[];
}

export interface AllowResult {
  uri: string;
  entry: string;
  applied: boolean;
  already: boolean;
}

export interface LaunchResult {
  slug: string;
}

/** An argv the client runs in an integrated terminal (`bottle.attach`, `bottle.logs`). */
export interface TerminalCommand {
  command: string[];
}

export interface BottleSummary {
  slug: string;
  agent: string;
  backend: string;
  status: string;
  /** ISO 8601 timestamp. */
  started_at: string;
  /** Path or URI of the bottle.toml the bottle was launched from. */
  manifest: string;
  /** "runsc" (gVisor) or "runc"; "" when unknown. */
  runtime?: string;
  /** For a degraded bottle: the command that repairs it. */
  fix?: string;
}

export interface AgentInfo {
  name: string;
  /** Name of the bottle (policy) the agent runs in. */
  bottle: string;
}

/** One line of a manifest's difference from what was last trusted (text already display-safe). */
export interface TrustChange {
  text: string;
  /** true: the bottle may do something it could not before (needs trust). */
  widening: boolean;
}

/** `bottle.trustReview` / `bottle.trust`: the saved manifest against its trust record. */
export interface TrustReview {
  manifest: string;
  firstUse: boolean;
  /** false: a launch is refused until the person trusts this content. */
  trusted: boolean;
  /** Names the reviewed content; `bottle.trust` records only that content. */
  fingerprint: string;
  changes: TrustChange[];
}

/** A server answer that does not have the shape this contract promises. */
export class ContractError extends Error {
  constructor(command: string, expected: string, got: unknown) {
    super(
      `bottle-lsp answered '${command}' with ${describe(got)}, expected ${expected}. ` +
        "The extension and the language server may be different versions: " +
        "update both (pip install -U bot-bottle).",
    );
    this.name = "ContractError";
  }
}

/**
 * The server could not do the command. It has already shown `message` to the user
 * (`window/showMessage`) and answered `{error: message}`; the client must not show it again.
 */
export class ServerReportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ServerReportedError";
  }
}

/** Throws `ServerReportedError` for an `{error: string}` answer. */
export function throwIfServerError(value: unknown): void {
  if (isRecord(value) && typeof value.error === "string") throw new ServerReportedError(value.error);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  const text = JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

export function parseLaunchResult(value: unknown): LaunchResult {
  throwIfServerError(value);
  if (isRecord(value) && isNonEmptyString(value.slug)) return { slug: value.slug };
  throw new ContractError(ServerCommand.launch, "{slug: string}", value);
}

export function parseTerminalCommand(command: string, value: unknown): TerminalCommand {
  throwIfServerError(value);
  if (
    isRecord(value) &&
    Array.isArray(value.command) &&
    value.command.length > 0 &&
    value.command.every(isNonEmptyString)
  ) {
    return { command: [...(value.command)] };
  }
  throw new ContractError(command, "{command: string[]} with at least one element", value);
}

/**
 * A list answer whose items are records named by a non-empty `key` (a bottle's slug, an agent's
 * name); `read` makes each typed item. `expected` words the two ways an answer can be malformed.
 */
function parseNamedList<K extends string, T>(
  command: string,
  value: unknown,
  key: K,
  expected: { list: string; item: string },
  read: (item: Record<string, unknown> & Record<K, string>) => T,
): T[] {
  throwIfServerError(value);
  if (!Array.isArray(value)) {
    throw new ContractError(command, expected.list, value);
  }
  return value.map((item) => {
    if (!isRecord(item) || !isNonEmptyString(item[key])) {
      throw new ContractError(command, expected.item, item);
    }
    return read(item as Record<string, unknown> & Record<K, string>);
  });
}

export function parseBottleList(value: unknown): BottleSummary[] {
  const expected = { list: "a list of bottles", item: "bottles with at least a slug" };
  return parseNamedList(ServerCommand.list, value, "slug", expected, (item) => {
    const text = (key: string): string => (typeof item[key] === "string" ? (item[key]) : "");
    return {
      slug: item.slug,
      agent: text("agent"),
      backend: text("backend"),
      status: text("status"),
      started_at: text("started_at"),
      manifest: text("manifest"),
      runtime: text("runtime"),
      fix: text("fix"),
    };
  });
}

export function parseActivity(value: unknown): BottleActivity[] {
  throwIfServerError(value);
  if (!isRecord(value) || !Array.isArray(value.bottles)) {
    throw new ContractError(ServerCommand.activity, "{bottles: [...]}", value);
  }
  return value.bottles.filter(isRecord).map((item) => {
    const text = (key: string): string => (typeof item[key] === "string" ? item[key] : "");
    const count = (key: string): number => (typeof item[key] === "number" ? item[key] : 0);
    const hosts = Array.isArray(item.hosts) ? item.hosts.filter(isRecord).map(parseHost) : [];
    return {
      slug: text("slug"),
      agent: text("agent"),
      bottle: text("bottle"),
      backend: text("backend"),
      runtime: text("runtime"),
      status: text("status"),
      state: item.state === "running" ? "running" : "degraded",
      fix: text("fix"),
      started_at: text("started_at"),
      manifest: text("manifest"),
      pending: count("pending"),
      denied: count("denied"),
      allowed: count("allowed"),
      hidden: count("hidden"),
      hosts,
    };
  });
}

function parseHost(item: Record<string, unknown>): HostActivity {
  const text = (key: string): string => (typeof item[key] === "string" ? item[key] : "");
  const count = (key: string): number => (typeof item[key] === "number" ? item[key] : 0);
  const decision = item.decision === "allow" || item.decision === "ask" ? item.decision : "deny";
  return {
    decision,
    host: text("host"),
    port: count("port"),
    count: count("count"),
    bytes: count("bytes"),
    last: text("last"),
    rule: text("rule"),
    reason: text("reason"),
    pending: Array.isArray(item.pending) ? item.pending.filter(isNonEmptyString) : [],
    allow: isNonEmptyString(item.allow) ? item.allow : null,
  };
}

export function parseAllowResult(value: unknown): AllowResult {
  throwIfServerError(value);
  if (isRecord(value) && isNonEmptyString(value.uri) && typeof value.applied === "boolean") {
    return { uri: value.uri, entry: typeof value.entry === "string" ? value.entry : "", applied: value.applied, already: value.already === true };
  }
  throw new ContractError(ServerCommand.allowHost, "{uri, entry, applied, already}", value);
}

export function parseAgents(value: unknown): AgentInfo[] {
  const expected = { list: "a list of {name, bottle}", item: "agents with a name" };
  return parseNamedList(ServerCommand.agents, value, "name", expected, (item) => ({
    name: item.name,
    bottle: typeof item.bottle === "string" ? item.bottle : "",
  }));
}

export function parseTrustReview(command: string, value: unknown): TrustReview {
  throwIfServerError(value);
  const expected = "{manifest, first_use, trusted, fingerprint, changes: [{text, widening}]}";
  if (
    !isRecord(value) ||
    typeof value.manifest !== "string" ||
    typeof value.trusted !== "boolean" ||
    !isNonEmptyString(value.fingerprint) ||
    !Array.isArray(value.changes)
  ) {
    throw new ContractError(command, expected, value);
  }
  const changes = value.changes.map((item) => {
    if (!isRecord(item) || typeof item.text !== "string" || typeof item.widening !== "boolean") {
      throw new ContractError(command, expected, item);
    }
    return { text: item.text, widening: item.widening };
  });
  return {
    manifest: value.manifest,
    firstUse: value.first_use === true,
    trusted: value.trusted,
    fingerprint: value.fingerprint,
    changes,
  };
}

/**
 * Reads the `{slug}` argument a code lens, a tree item or another extension passed to a
 * command. Accepts the object form of the contract, a `BottleSummary`, or a bare slug.
 */
export function slugFromArgument(value: unknown): string | undefined {
  if (isNonEmptyString(value)) return value;
  if (isRecord(value) && isNonEmptyString(value.slug)) return value.slug;
  return undefined;
}

/** Reads `{uri, agent}` from a code lens argument; either part may be missing. */
export function launchArgsFromArgument(value: unknown): Partial<LaunchArgs> {
  if (!isRecord(value)) return {};
  const args: Partial<LaunchArgs> = {};
  if (isNonEmptyString(value.uri)) args.uri = value.uri;
  if (isNonEmptyString(value.agent)) args.agent = value.agent;
  return args;
}
