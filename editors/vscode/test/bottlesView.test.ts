import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { BottlesTreeProvider, refreshPeriodMs } from "../src/bottlesView";
import { FakeServer } from "./support/fake-server";
import { TreeItem, fake } from "./support/fake-vscode";

let server: FakeServer;
const now = new Date("2026-01-02T12:00:00Z");

beforeEach(() => {
  fake.reset();
  server = new FakeServer();
});

describe("the Bottles view", () => {
  it("lists running bottles newest first with agent, backend and age", async () => {
    server.answers.set("bottle.list", [
      { slug: "old", agent: "dev", backend: "docker", status: "running", started_at: "2026-01-02T09:00:00Z", manifest: "/w/bottle.toml" },
      { slug: "new", agent: "review", backend: "smolmachines", status: "running", started_at: "2026-01-02T11:59:30Z", manifest: "/w/bottle.toml" },
    ]);
    const provider = new BottlesTreeProvider(server, () => now);
    const bottles = await provider.getChildren();
    const items = bottles.map((bottle) => provider.getTreeItem(bottle) as unknown as TreeItem);
    assert.deepEqual(items.map((item) => [item.label, item.description, item.contextValue]), [
      ["new", "review · smolmachines · up 30s", "bottle.running"],
      ["old", "dev · docker · up 3h", "bottle.running"],
    ]);
  });

  it("leaves out stopped bottles, and shows a degraded one as degraded, not running", async () => {
    server.answers.set("bottle.list", [
      { slug: "up", status: "running", started_at: "2026-01-02T00:00:00Z" },
      { slug: "down", status: "exited" },
      { slug: "broken", status: "exited, degraded: bundle gone", started_at: "2026-01-01T00:00:00Z" },
    ]);
    const provider = new BottlesTreeProvider(server, () => now);
    const bottles = await provider.getChildren();
    assert.deepEqual(bottles.map((bottle) => bottle.slug), ["up", "broken"]);
    const broken = provider.getTreeItem(bottles[1]) as unknown as TreeItem;
    assert.equal(broken.contextValue, "bottle.degraded", "no inline Attach for it");
    assert.equal((broken.iconPath as { id: string }).id, "warning");
  });

  it("is empty (and shows its welcome text) while the server is not running", async () => {
    server.isRunning = false;
    const provider = new BottlesTreeProvider(server, () => now);
    assert.deepEqual(await provider.getChildren(), []);
    assert.equal(server.requests.length, 0);
  });

  it("shows why listing failed as the view's message, and clears it once it works", async () => {
    const provider = new BottlesTreeProvider(server, () => now);
    const view = { message: undefined as string | undefined };
    provider.view = view as never;
    server.answers.set("bottle.list", new Error("Docker is not running. Start it, then refresh."));
    assert.deepEqual(await provider.getChildren(), []);
    assert.equal(view.message, "Could not list bottles: Docker is not running. Start it, then refresh. (Refresh to retry.)");
    server.answers.set("bottle.list", []);
    await provider.getChildren();
    assert.equal(view.message, undefined);
  });

  it("shows an {error} answer from the server as the view's message", async () => {
    const provider = new BottlesTreeProvider(server, () => now);
    const view = { message: undefined as string | undefined };
    provider.view = view as never;
    server.answers.set("bottle.list", { error: "Cannot reach Docker." });
    assert.deepEqual(await provider.getChildren(), []);
    assert.ok(provider.lastListingFailed, "the timer stops retrying: the server reports every failure");
    assert.match(view.message ?? "", /Cannot reach Docker\./);
  });

  it("tells the tree to reload when asked", () => {
    const provider = new BottlesTreeProvider(server, () => now);
    let reloads = 0;
    provider.onDidChangeTreeData(() => reloads++);
    provider.refresh();
    assert.equal(reloads, 1);
  });

  it("refreshes on a timer no more than once a second, whatever a workspace's settings ask", () => {
    // botBottle.bottles.refreshInterval is a window setting: .vscode/settings.json may set it.
    assert.equal(refreshPeriodMs(0.001), 1000);
    assert.equal(refreshPeriodMs(1e-300), 1000);
    assert.equal(refreshPeriodMs(5), 5000);
    assert.equal(refreshPeriodMs(1e300), 2 ** 31 - 1, "Node runs a longer timer every millisecond");
    for (const off of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "0.001", null, undefined]) {
      assert.equal(refreshPeriodMs(off), undefined, String(off));
    }
  });
});
