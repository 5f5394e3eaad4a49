/**
 * What the "Bottles" view shows for each running bottle: plain functions over the server's
 * `bottle.list` answer, so the wording is testable without an editor.
 */
import type { BottleActivity, BottleSummary } from "./contract";
import { displayText } from "./display";

/** A short age like "42s", "5m", "3h 2m", "2d 4h"; "" when the timestamp is unreadable. */
export function formatAge(startedAt: string, now: Date): string {
  const started = Date.parse(startedAt);
  if (Number.isNaN(started)) return "";
  const seconds = Math.max(0, Math.floor((now.getTime() - started) / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  const days = Math.floor(hours / 24);
  return hours % 24 === 0 ? `${days}d` : `${days}d ${hours % 24}h`;
}

/** "gVisor" for runsc, "runc" for runc, "" when the backend did not say. */
export function runtimeLabel(runtime: string | undefined): string {
  if (runtime === "runsc") return "gVisor";
  return runtime ?? "";
}

/** The grey text beside the slug: "agent · backend · runtime · up age", then what needs a
 * person: pending approvals and refused requests since launch (from `bottle/activity`). */
export function bottleDescription(bottle: BottleSummary, now: Date, activity?: BottleActivity): string {
  const age = formatAge(bottle.started_at, now);
  const state = bottleState(bottle);
  const parts = [bottle.agent, bottle.backend, runtimeLabel(bottle.runtime ?? activity?.runtime)];
  parts.push(state === "running" ? (age === "" ? "" : `up ${age}`) : bottle.status.split(" (run")[0]);
  if (activity !== undefined && activity.pending > 0) parts.push(`${activity.pending} pending`);
  if (activity !== undefined && activity.denied > 0) parts.push(`${activity.denied} denied`);
  return parts.filter((part) => part !== "").map((part) => displayText(part)).join(" · ");
}

export function bottleTooltip(bottle: BottleSummary, now: Date): string {
  const age = formatAge(bottle.started_at, now);
  const lines = [
    `Bottle ${displayText(bottle.slug)}`,
    `Agent: ${displayText(bottle.agent || "unknown")}`,
    `Backend: ${displayText(bottle.backend || "unknown")}`,
    `Status: ${displayText(bottle.status || "unknown")}`,
  ];
  if (bottle.started_at !== "") {
    lines.push(`Started: ${displayText(bottle.started_at)}${age === "" ? "" : ` (${age} ago)`}`);
  }
  if (bottle.runtime) lines.push(`Runtime: ${displayText(bottle.runtime === "runsc" ? "gVisor (runsc)" : bottle.runtime)}`);
  if (bottle.fix) lines.push(`Repair: ${displayText(bottle.fix)}`);
  if (bottle.manifest !== "") lines.push(`Manifest: ${displayText(bottle.manifest)}`);
  return lines.join("\n");
}

export type BottleState = "running" | "degraded" | "stopped";

/**
 * From the engine's status text (the server's lenses use the same rule, `lenses.bottle_state`):
 * only "running" runs. A bottle whose bundle is down or gone ("degraded: bundle gone",
 * "exited, degraded: ...") has no way out and is not shown as if it worked.
 */
export function bottleState(bottle: Pick<BottleSummary, "status">): BottleState {
  const text = bottle.status.trim().toLowerCase();
  if (text === "running") return "running";
  return text.includes("degraded") ? "degraded" : "stopped";
}

export function isRunning(bottle: BottleSummary): boolean {
  return bottleState(bottle) === "running";
}

/** `contextValue` of a tree item; package.json menus key the inline actions on it. */
export function bottleContextValue(bottle: BottleSummary): string {
  return `bottle.${bottleState(bottle)}`;
}

/** Newest first, so a bottle just launched is at the top of the view. */
export function sortBottles(bottles: readonly BottleSummary[]): BottleSummary[] {
  return [...bottles].sort((left, right) => {
    const byStart = (Date.parse(right.started_at) || 0) - (Date.parse(left.started_at) || 0);
    return byStart !== 0 ? byStart : left.slug.localeCompare(right.slug);
  });
}

/** Quick Pick rows for choosing a running bottle (Attach / Stop / Show Egress Log). */
export function bottlePickItems(
  bottles: readonly BottleSummary[],
  now: Date,
): { label: string; description: string; slug: string }[] {
  return sortBottles(bottles).map((bottle) => ({
    label: displayText(bottle.slug),
    description: bottleDescription(bottle, now),
    slug: bottle.slug,
  }));
}
