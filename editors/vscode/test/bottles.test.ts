import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bottleContextValue, bottleDescription, bottlePickItems, bottleTooltip, formatAge, isRunning, sortBottles } from "../src/bottles";
import type { BottleActivity, BottleSummary } from "../src/contract";
import { ProgressTranslator } from "../src/progress";
import { chooseManifest, isManifestPath } from "../src/manifests";

const now = new Date("2026-01-02T12:00:00Z");
const bottle = (slug: string, started_at: string, extra: Partial<BottleSummary> = {}): BottleSummary => ({
  slug,
  agent: "dev",
  backend: "docker",
  status: "running",
  started_at,
  manifest: "/w/bottle.toml",
  ...extra,
});

describe("bottle ages", () => {
  const cases: [string, string][] = [
    ["2026-01-02T11:59:18Z", "42s"],
    ["2026-01-02T11:55:00Z", "5m"],
    ["2026-01-02T10:00:00Z", "2h"],
    ["2026-01-02T08:58:00Z", "3h 2m"],
    ["2025-12-31T08:00:00Z", "2d 4h"],
    ["2025-12-31T12:00:00Z", "2d"],
    ["2026-01-02T12:00:05Z", "0s"],
    ["not a date", ""],
  ];
  for (const [startedAt, expected] of cases) {
    it(`${startedAt} -> "${expected}"`, () => assert.equal(formatAge(startedAt, now), expected));
  }
});

describe("bottle rows", () => {
  it("shows agent, backend and age beside the slug", () => {
    assert.equal(bottleDescription(bottle("a", "2026-01-02T11:55:00Z"), now), "dev · docker · up 5m");
    assert.equal(bottleDescription(bottle("a", "", { backend: "" }), now), "dev");
  });

  it("adds the runtime, pending approvals and refusals since launch", () => {
    const activity = { runtime: "runsc", pending: 2, denied: 3 } as BottleActivity;
    const running = bottle("a", "2026-01-02T11:55:00Z", { runtime: "runsc" });
    assert.equal(bottleDescription(running, now, activity), "dev · docker · gVisor · up 5m · 2 pending · 3 denied");
    const plain = bottle("a", "2026-01-02T11:55:00Z", { runtime: "runc" });
    assert.equal(bottleDescription(plain, now, { ...activity, pending: 0, denied: 0 }), "dev · docker · runc · up 5m");
    assert.match(bottleTooltip(running, now), /Runtime: gVisor \(runsc\)/);
  });

  it("says a degraded bottle is degraded, not up, and how to repair it", () => {
    const degraded = bottle("a", "2026-01-02T11:55:00Z", { status: "degraded: bundle gone", fix: "bottle-engine stop --rm a, then launch it again" });
    assert.equal(bottleDescription(degraded, now), "dev · docker · degraded: bundle gone");
    assert.match(bottleTooltip(degraded, now), /Repair: bottle-engine stop --rm a/);
  });

  it("puts status and manifest in the tooltip", () => {
    const tooltip = bottleTooltip(bottle("a", "2026-01-02T11:55:00Z"), now);
    assert.match(tooltip, /Status: running/);
    assert.match(tooltip, /Started: 2026-01-02T11:55:00Z \(5m ago\)/);
    assert.match(tooltip, /Manifest: \/w\/bottle\.toml/);
  });

  it("counts only a running bottle as running; a degraded one is degraded", () => {
    assert.equal(bottleContextValue(bottle("a", "")), "bottle.running");
    for (const status of ["degraded: bundle gone", "degraded: bundle down", "exited, degraded: network gone"]) {
      assert.equal(bottleContextValue(bottle("a", "", { status })), "bottle.degraded", status);
      assert.equal(isRunning(bottle("a", "", { status })), false, status);
    }
    for (const status of ["exited", "Stopped", "dead", "unknown", "missing"]) {
      assert.equal(bottleContextValue(bottle("a", "", { status })), "bottle.stopped", status);
    }
  });

  it("lists the newest bottle first", () => {
    const sorted = sortBottles([bottle("old", "2026-01-01T00:00:00Z"), bottle("new", "2026-01-02T00:00:00Z"), bottle("b", ""), bottle("a", "")]);
    assert.deepEqual(sorted.map((b) => b.slug), ["new", "old", "a", "b"]);
    assert.deepEqual(bottlePickItems([bottle("x", "2026-01-02T11:59:00Z")], now), [{ label: "x", description: "dev · docker · up 1m", slug: "x" }]);
  });
});

describe("launch progress", () => {
  it("turns absolute percentages into increments and keeps stage messages", () => {
    const translator = new ProgressTranslator();
    assert.deepEqual(translator.next({ kind: "begin", title: "Launching dev", percentage: 0 }), { message: "Launching dev" });
    assert.deepEqual(translator.next({ kind: "report", message: "building image", percentage: 30 }), { message: "building image", increment: 30 });
    assert.deepEqual(translator.next({ kind: "report", message: "starting bundle" }), { message: "starting bundle" });
    assert.deepEqual(translator.next({ kind: "report", percentage: 20 }), undefined, "progress never goes back");
    assert.deepEqual(translator.next({ kind: "end", message: "ready" }), { message: "ready", increment: 70 });
  });
});

describe("which bottle.toml a palette launch means", () => {
  const manifests = ["/w/b/bottle.toml", "/w/a/bottle.toml"];
  const same = (p: string): string => p;

  it("recognises bottle.toml by file name only", () => {
    assert.ok(isManifestPath("/w/x/bottle.toml"));
    assert.ok(isManifestPath("C:\\w\\bottle.toml"));
    assert.ok(!isManifestPath("/w/x/my-bottle.toml"));
  });

  it("takes the open manifest, else the only one, else asks in path order", () => {
    assert.deepEqual(chooseManifest("/w/c/bottle.toml", manifests, same), { kind: "one", manifest: "/w/c/bottle.toml" });
    assert.deepEqual(chooseManifest("/w/README.md", ["/w/a/bottle.toml"], same), { kind: "one", manifest: "/w/a/bottle.toml" });
    assert.deepEqual(chooseManifest(undefined, manifests, same), { kind: "pick", manifests: ["/w/a/bottle.toml", "/w/b/bottle.toml"] });
    assert.deepEqual(chooseManifest(undefined, [], same), { kind: "none" });
  });
});
