/**
 * What the "Bottles" view shows for each running bottle: plain functions over the server's
 * `bottle.list` answer, so the wording is testable without an editor.
 */
import type { BottleSummary } from "./contract";
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

/** The grey text beside the slug: "agent · backend · age". */
export function bottleDescription(bottle: BottleSummary, now: Date): string {
  const age = formatAge(bottle.started_at, now);
  return [bottle.agent, bottle.backend, age].filter((part) => part !== "").map((part) => displayText(part)).join(" · ");
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
  if (bottle.manifest !== "") lines.push(`Manifest: ${displayText(bottle.manifest)}`);
  return lines.join("\n");
}

/** Statuses of a bottle that is not running (the server's code lenses use the same set). */
const STOPPED_STATUSES = new Set(["stopped", "exited", "removed", "dead", "failed"]);

export function isRunning(bottle: BottleSummary): boolean {
  return !STOPPED_STATUSES.has(bottle.status.toLowerCase());
}

/** `contextValue` of a tree item; package.json menus key the inline actions on it. */
export function bottleContextValue(bottle: BottleSummary): string {
  return isRunning(bottle) ? "bottle.running" : "bottle.stopped";
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
