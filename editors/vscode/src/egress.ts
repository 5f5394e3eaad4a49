/**
 * What the Egress view and the status bar say: plain functions over `bottle/activity`, so the
 * wording is testable without an editor. Texts from the server are display-safe already; they
 * go through `displayText` again here, as everything from a bottle does in this extension.
 */
import type { BottleActivity, EgressDecision, HostActivity } from "./contract";
import { displayText } from "./display";

export const DECISION_LABELS: Record<EgressDecision, string> = {
  deny: "Denied",
  ask: "Asked",
  allow: "Allowed",
};
const DECISION_ORDER: EgressDecision[] = ["deny", "ask", "allow"];

export interface DecisionGroup {
  decision: EgressDecision;
  label: string;
  hosts: HostActivity[];
}

/** The groups of one bottle, refusals first; empty groups are left out. */
export function decisionGroups(bottle: BottleActivity): DecisionGroup[] {
  return DECISION_ORDER.map((decision) => ({
    decision,
    label: `${DECISION_LABELS[decision]} (${bottle.hosts.filter((h) => h.decision === decision).length})`,
    hosts: bottle.hosts.filter((h) => h.decision === decision),
  })).filter((group) => group.hosts.length > 0);
}

/** "1.2 KB", "3 B", "4.0 MB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** "12:03:04" in local time, or the raw text when it is not a time. */
export function formatTime(iso: string): string {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return displayText(iso);
  return when.toLocaleTimeString([], { hour12: false });
}

/** Characters of a host name a row's label shows: past them, its end (the tooltip has all). */
export const LABEL_HOST_CHARS = 32;

export function hostLabel(host: HostActivity): string {
  // A connection refused before it named anywhere (a request head too large or unparseable).
  if (host.host === "") return "(no destination)";
  const port = host.port === 80 || host.port === 443 ? "" : `:${host.port}`;
  return displayText(`${hostTail(host.host)}${port}`);
}

/** A long name's last labels: a tree row shows its label's start and cuts the rest at the
 * view's edge, and the agent chooses the name, so `api.github.com.<padding>.collector.example`
 * read as GitHub; whose a name is shows at its end. */
function hostTail(name: string): string {
  if (name.length <= LABEL_HOST_CHARS) return name;
  const tail = name.slice(-LABEL_HOST_CHARS);
  const dot = tail.indexOf(".");
  return `…${dot > 0 && dot < tail.length - 1 ? tail.slice(dot) : tail}`;
}

/** "3× · 1.2 KB · 12:03:04 · rule", and for an ask still waiting, "waiting for you". */
export function hostDescription(host: HostActivity): string {
  const parts = [`${host.count}×`];
  if (host.bytes > 0) parts.push(formatBytes(host.bytes));
  if (host.last !== "") parts.push(formatTime(host.last));
  if (host.pending.length > 0) parts.push("waiting for you");
  else if (host.rule !== "") parts.push(displayText(host.rule));
  return parts.join(" · ");
}

export function hostTooltip(host: HostActivity): string {
  const lines = [
    `${DECISION_LABELS[host.decision]}: ${displayText(host.host)}:${host.port}`,
    `Requests: ${host.count}${host.bytes > 0 ? ` (${formatBytes(host.bytes)})` : ""}`,
  ];
  if (host.last !== "") lines.push(`Last: ${displayText(host.last)}`);
  if (host.rule !== "") lines.push(`Rule: ${displayText(host.rule)}`);
  if (host.reason !== "") lines.push(`Reason: ${displayText(host.reason)}`);
  if (host.allow !== null) lines.push(`Allow adds "${displayText(host.allow)}" to this bottle's allow in bottle.toml.`);
  return lines.join("\n");
}

/** `contextValue` of a host row; package.json menus offer Allow / Approve / Deny on it. */
export function hostContextValue(host: HostActivity): string {
  if (host.pending.length > 0) return "egress.pending";
  if (host.allow !== null) return "egress.allowable";
  return `egress.${host.decision}`;
}

/** The status-bar item: running bottles and pending approvals, with a tooltip. */
export function statusBarText(bottles: readonly BottleActivity[]): { text: string; tooltip: string } {
  const running = bottles.filter((b) => b.state === "running").length;
  const degraded = bottles.length - running;
  const pending = bottles.reduce((sum, b) => sum + b.pending, 0);
  let text = `$(vm) ${running}`;
  if (pending > 0) text += ` $(bell) ${pending}`;
  if (degraded > 0) text += ` $(warning) ${degraded}`;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
  const tooltip = [
    `Bot Bottle: ${plural(running, "running bottle")}`,
    pending > 0 ? plural(pending, "pending approval") : "",
    degraded > 0 ? `${degraded} degraded` : "",
  ].filter((part) => part !== "").join(", ");
  return { text, tooltip };
}
