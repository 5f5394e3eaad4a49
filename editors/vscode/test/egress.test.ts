import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { ActivityStore } from "../src/activityStore";
import { parseActivity, type HostActivity } from "../src/contract";
import { decisionGroups, formatBytes, hostContextValue, hostDescription, hostLabel, hostTooltip, statusBarText } from "../src/egress";
import { EgressTreeProvider, allowHost, answerAsk, registerStatusBar, type EgressNode } from "../src/egressView";
import { FakeServer } from "./support/fake-server";
import { TreeItem, fake } from "./support/fake-vscode";

const host = (extra: Partial<HostActivity>): Record<string, unknown> => ({
  decision: "allow",
  host: "upstream.test",
  port: 443,
  count: 1,
  bytes: 0,
  last: "2026-11-30T04:00:00.000+00:00",
  rule: "upstream.test",
  reason: "",
  pending: [],
  allow: null,
  ...extra,
});

const PICTURE = {
  bottles: [
    {
      slug: "dev-1",
      agent: "dev",
      bottle: "web",
      backend: "docker",
      runtime: "runsc",
      status: "running",
      state: "running",
      started_at: "2026-11-30T03:00:00+00:00",
      pending: 1,
      denied: 2,
      allowed: 5,
      hidden: 0,
      hosts: [
        host({ decision: "deny", host: "stranger.test", port: 80, count: 2, rule: "default-deny", allow: "stranger.test" }),
        host({ decision: "ask", host: "new.test", rule: "ask", pending: ["r1"] }),
        host({ count: 5, bytes: 2048 }),
        host({ decision: "deny", host: "10.1.2.3", rule: "ip-literal" }),
      ],
    },
    { slug: "dev-2", state: "degraded", status: "degraded: bundle gone", pending: 0, hosts: [] },
  ],
};

let server: FakeServer;
beforeEach(() => {
  fake.reset();
  server = new FakeServer();
});

describe("egress rows", () => {
  const [bottle] = parseActivity(PICTURE);

  it("groups hosts by decision, refusals first, with counts in the group label", () => {
    assert.deepEqual(decisionGroups(bottle).map((g) => [g.label, g.hosts.map((h) => h.host)]), [
      ["Denied (2)", ["stranger.test", "10.1.2.3"]],
      ["Asked (1)", ["new.test"]],
      ["Allowed (1)", ["upstream.test"]],
    ]);
  });

  it("shows count, bytes, last time and rule; a port only when it is not 80/443", () => {
    const allowed = bottle.hosts[2];
    assert.match(hostDescription(allowed), /^5× · 2\.0 KB · \d\d:\d\d:\d\d · upstream\.test$/);
    assert.equal(hostLabel({ ...allowed, port: 8443 }), "upstream.test:8443");
    assert.equal(hostLabel({ ...allowed, host: "", port: 0 }), "(no destination)");
    assert.equal(hostDescription(bottle.hosts[1]).endsWith("waiting for you"), true);
    assert.equal(formatBytes(3), "3 B");
    assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MB");
  });

  it("offers Allow only where the server named an allow entry, Approve / Deny on a waiting ask", () => {
    assert.deepEqual(bottle.hosts.map(hostContextValue), ["egress.allowable", "egress.pending", "egress.allow", "egress.deny"]);
    assert.match(hostTooltip(bottle.hosts[0]), /Allow adds "stranger\.test"/);
  });

  it("escapes a hostile host name again before showing it", () => {
    const [hostile] = parseActivity({ bottles: [{ slug: "x", state: "running", hosts: [host({ host: "evil\u202e.test[go](command:x)" })] }] });
    const label = hostLabel(hostile.hosts[0]);
    assert.ok(!label.includes("\u202e") && !label.includes("](command"), label);
  });

  it("shows the end of a long host name, the part that says whose it is", () => {
    // The agent picks the name: a tree row shows its label's start and cuts the rest at the
    // view's edge, so a name that begins like a host the person trusts read as that host, and
    // its Approve let the bottle reach the collector at the end for the bottle's life.
    const name = `api.github.com.${"edge-cache-node.".repeat(12)}collector.example`;
    const [long] = parseActivity({ bottles: [{ slug: "x", state: "running", hosts: [host({ decision: "ask", host: name })] }] });
    const label = hostLabel(long.hosts[0]);
    assert.ok(!label.startsWith("api.github.com"), label);
    assert.ok(label.slice(0, 40).includes("collector.example"), label);
    assert.match(hostTooltip(long.hosts[0]), new RegExp(`Asked: ${name.replaceAll(".", "\\.")}:443`));
    const short = hostLabel(parseActivity({ bottles: [{ slug: "x", state: "running", hosts: [host({ host: "api.github.com" })] }] })[0].hosts[0]);
    assert.equal(short, "api.github.com");
  });

  it("counts running bottles and pending approvals for the status bar", () => {
    assert.deepEqual(statusBarText(parseActivity(PICTURE)), {
      text: "$(vm) 1 $(bell) 1 $(warning) 1",
      tooltip: "Bot Bottle: 1 running bottle, 1 pending approval, 1 degraded",
    });
    assert.equal(statusBarText([]).text, "$(vm) 0");
  });
});

describe("the Egress view", () => {
  it("fills from the server's pushes without asking for anything", () => {
    const store = new ActivityStore(server);
    const provider = new EgressTreeProvider(store, () => new Date("2026-11-30T03:05:00Z"));
    let changes = 0;
    store.onDidChange(() => changes++);
    assert.deepEqual(provider.getChildren(), []);
    server.pushActivity(PICTURE);
    assert.equal(changes, 1);
    const [first, second] = provider.getChildren();
    const item = provider.getTreeItem(first) as unknown as TreeItem;
    assert.equal(item.label, "dev-1");
    assert.match(item.description ?? "", /^dev · docker · gVisor · up 5m · 1 pending · 2 denied$/);
    assert.equal(((provider.getTreeItem(second) as unknown as TreeItem).iconPath as { id: string }).id, "warning");
    const groups = provider.getChildren(first);
    const denied = provider.getChildren(groups[0]);
    assert.deepEqual(denied.map((n) => (provider.getTreeItem(n) as unknown as TreeItem).label), ["stranger.test", "10.1.2.3"]);
    assert.equal(server.requests.length, 0, "no polling");
  });

  it("gives every host row an id of its own, even when two rows read the same", () => {
    // The server cuts a host name the agent made longer than any real one, so two such names
    // arrive as the same text; VS Code refuses a second element with an id already registered
    // ("Element with id ... is already registered") and shows none of the group's rows.
    const cut = `${"a".repeat(260)}… (25 more characters)`;
    const hosts = [cut, cut, "stranger.test"].map((name) => host({ decision: "deny", host: name, port: 80, rule: "bad-destination" }));
    const store = new ActivityStore(server);
    const provider = new EgressTreeProvider(store);
    server.pushActivity({ bottles: [{ ...PICTURE.bottles[0], hosts }] });
    const [bottle] = provider.getChildren();
    const [denied] = provider.getChildren(bottle);
    const ids = provider.getChildren(denied).map((n) => (provider.getTreeItem(n) as unknown as TreeItem).id);
    assert.equal(ids.length, 3);
    assert.equal(new Set(ids).size, 3, String(ids));
    assert.equal(ids[2], "host:dev-1:deny:stranger.test:80", "an id stays what it was for a row that reads as no other");
  });

  it("asks the server for the picture once it (re)starts", async () => {
    server.answers.set("bottle.activity", PICTURE);
    const store = new ActivityStore(server);
    server.setState("running");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(store.all.length, 2);
  });

  it("Allow sends the row's bottle, host and port, then opens the edited bottle.toml", async () => {
    const [bottle] = parseActivity(PICTURE);
    server.answers.set("bottle.allowHost", { uri: "file:///w/bottle.toml", entry: "stranger.test", applied: true, already: false });
    const node: EgressNode = { kind: "host", slug: "dev-1", host: bottle.hosts[0] };
    fake.documentText = '[bottles.web.egress]\nallow = ["upstream.test", "stranger.test"]\n';
    await allowHost(server, node);
    const at = fake.documentText.indexOf('"stranger.test"');
    assert.deepEqual(JSON.parse(JSON.stringify(fake.revealed)), [{ start: { offset: at }, end: { offset: at + 15 } }], "the new entry is shown");
    assert.deepEqual(server.requests.at(-1), { command: "bottle.allowHost", args: [{ slug: "dev-1", host: "stranger.test", port: 80 }] });
    assert.deepEqual(fake.shownDocuments, ["file:///w/bottle.toml"]);
    assert.match(fake.messages.at(-1)?.message ?? "", /Added stranger\.test .*Save bottle\.toml and launch again/);
    await allowHost(server, { kind: "host", slug: "dev-1", host: bottle.hosts[3] });
    assert.equal(server.requests.length, 1, "no Allow for an IP-literal refusal");
  });

  it("Approve and Deny answer each waiting request of the row, naming the row's host and port", async () => {
    const [bottle] = parseActivity(PICTURE);
    server.answers.set("bottle.answer", {});
    await answerAsk(server, { kind: "host", slug: "dev-1", host: bottle.hosts[1] }, false);
    assert.deepEqual(server.requests.at(-1)?.args, [{ slug: "dev-1", request_id: "r1", approved: false, host: "new.test", port: 443 }]);
  });

  it("Approve from a row answers only once the person confirms the whole host name in a modal", async () => {
    const long = `api.github.com.${"edge-cache-node.".repeat(8)}collector.example`;
    const [bottle] = parseActivity({ bottles: [{ slug: "dev-1", state: "running", pending: 1, hosts: [host({ decision: "ask", host: long, rule: "ask", pending: ["r9"] })] }] });
    const row: EgressNode = { kind: "host", slug: "dev-1", host: bottle.hosts[0] };
    server.answers.set("bottle.answer", {});
    await answerAsk(server, row, true);
    assert.equal(server.requests.length, 0, "one click on the row's icon approves nothing");
    const [modal] = fake.messages;
    assert.equal(modal.modal, true);
    assert.match(modal.message, new RegExp(`reach ${long.replaceAll(".", "\\.")}:443 until it stops`));
    fake.messageAnswer = (message) => (message.modal ? "Approve" : undefined);
    await answerAsk(server, row, true);
    assert.deepEqual(server.requests.at(-1)?.args, [{ slug: "dev-1", request_id: "r9", approved: true, host: long, port: 443 }]);
  });

  it("keeps the status-bar item in step with the pushes", () => {
    const store = new ActivityStore(server);
    registerStatusBar(store, statusBarText);
    const [item] = fake.statusBarItems;
    assert.equal(item.text, "$(vm) 0");
    server.pushActivity(PICTURE);
    assert.equal(item.text, "$(vm) 1 $(bell) 1 $(warning) 1");
    assert.equal(item.command, "botBottle.showViews");
  });
});
