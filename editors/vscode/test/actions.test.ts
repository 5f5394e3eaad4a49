import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { BottleActions } from "../src/actions";
import { SERVER_WORKING_DIRECTORY } from "../src/serverCommand";
import { FakeServer, TRUST_REVIEW } from "./support/fake-server";
import { Uri, fake } from "./support/fake-vscode";

const MANIFEST = "file:///workspace/bottle.toml";
let server: FakeServer;
let actions: BottleActions;

beforeEach(() => {
  fake.reset();
  server = new FakeServer();
  actions = new BottleActions(server);
});

const errors = (): string[] => fake.messages.filter((m) => m.level === "error").map((m) => m.message);

describe("Attach", () => {
  it("from a code lens opens a terminal running the server's argv without a shell", async () => {
    server.answers.set("bottle.attach", { command: ["bottle-engine", "attach", "dev-1a2b", "--shell"] });
    await actions.handleServerCommand("bottle.attach", [{ slug: "dev-1a2b" }], undefined);
    assert.deepEqual(server.requests, [{ command: "bottle.attach", args: [{ slug: "dev-1a2b" }] }]);
    assert.equal(fake.terminals.length, 1);
    assert.deepEqual(
      { name: fake.terminals[0].name, shellPath: fake.terminals[0].shellPath, shellArgs: fake.terminals[0].shellArgs, shown: fake.terminals[0].shown },
      { name: "Bottle dev-1a2b", shellPath: "bottle-engine", shellArgs: ["attach", "dev-1a2b", "--shell"], shown: true },
    );
  });

  it("runs bottle-engine outside the workspace folder, where an empty PYTHONPATH entry would import the branch's", async () => {
    server.answers.set("bottle.attach", { command: ["bottle-engine", "attach", "dev-1a2b"] });
    await actions.handleServerCommand("bottle.attach", [{ slug: "dev-1a2b" }], undefined);
    assert.equal(fake.terminals[0].cwd, SERVER_WORKING_DIRECTORY, "a terminal's default is the workspace folder");
  });

  it("from the palette attaches straight away when one bottle runs", async () => {
    server.answers.set("bottle.list", [{ slug: "only", agent: "dev", backend: "docker", status: "running", started_at: "", manifest: "" }]);
    server.answers.set("bottle.attach", { command: ["sh"] });
    await actions.attach();
    assert.equal(fake.quickPicks.length, 0);
    assert.deepEqual(server.requests.at(-1), { command: "bottle.attach", args: [{ slug: "only" }] });
  });

  it("asks which bottle when several run, and does nothing when the pick is dismissed", async () => {
    server.answers.set("bottle.list", [
      { slug: "a", status: "running", started_at: "2026-01-01T00:00:00Z" },
      { slug: "b", status: "running", started_at: "2026-01-02T00:00:00Z" },
    ]);
    server.answers.set("bottle.attach", { command: ["sh"] });
    fake.pickAnswer = () => undefined;
    await actions.attach();
    assert.deepEqual((fake.quickPicks[0].items as { label: string }[]).map((item) => item.label), ["b", "a"]);
    assert.equal(fake.terminals.length, 0);
    assert.deepEqual(server.requests.map((r) => r.command), ["bottle.list"]);
  });

  it("says so when no bottle runs (stopped ones do not count)", async () => {
    server.answers.set("bottle.list", [{ slug: "old", status: "exited" }]);
    await actions.attach();
    assert.deepEqual(fake.messages.map((m) => m.message), ["No bottles are running."]);
  });

  it("shows a malformed server answer as an error message, not an exception", async () => {
    server.answers.set("bottle.attach", { command: "bottle-engine attach x" });
    await actions.attach({ slug: "x" });
    assert.equal(fake.terminals.length, 0);
    assert.match(errors()[0], /^Bot Bottle: attach failed: bottle-lsp answered 'bottle\.attach'/);
  });
});

describe("Launch", () => {
  it("from a lens launches the lens's agent with stage progress in a notification", async () => {
    server.answers.set("bottle.launch", (_args: unknown[], srv: FakeServer, token?: string) => {
      assert.ok(token !== undefined, "the client passes a work done token");
      srv.progress(token, { kind: "begin", title: "Launching dev" });
      srv.progress(token, { kind: "report", message: "building the agent image", percentage: 40 });
      srv.progress(token, { kind: "end" });
      return { slug: "dev-9c1d" };
    });
    const slug = await actions.handleServerCommand("bottle.launch", [{ uri: MANIFEST, agent: "dev" }], undefined);
    assert.equal(slug, "dev-9c1d");
    assert.deepEqual(server.requests[0].args, [{ uri: MANIFEST, agent: "dev" }]);
    assert.equal(fake.quickPicks.length, 0, "a lens already names the agent");
    assert.equal(fake.progress.length, 1);
    assert.equal(fake.progress[0].title, "Launching bottle for agent dev");
    assert.equal(fake.progress[0].location, 15, "a notification, not the status bar");
    assert.deepEqual(fake.progress[0].reports, [
      { message: "Launching dev" },
      { message: "building the agent image", increment: 40 },
      { increment: 60 },
    ]);
    assert.equal(server.bottlesChangedCount, 1, "the Bottles view refreshes");
    assert.deepEqual(fake.messages[0], { level: "info", message: "Bottle dev-9c1d is running (agent dev).", actions: ["Attach", "Show Egress Log"] });
  });

  it("from the palette uses the open bottle.toml and asks for the agent", async () => {
    fake.activeEditorUri = Uri.parse(MANIFEST);
    server.answers.set("bottle.agents", [{ name: "dev", bottle: "default" }, { name: "review", bottle: "strict" }]);
    server.answers.set("bottle.launch", { slug: "review-1" });
    fake.pickAnswer = (items) => items[1];
    await actions.launch();
    assert.deepEqual(server.requests.map((r) => [r.command, r.args]), [
      ["bottle.agents", [{ uri: MANIFEST }]],
      ["bottle.launch", [{ uri: MANIFEST, agent: "review" }]],
    ]);
    assert.deepEqual(fake.quickPicks[0].items, [
      { label: "dev", description: "bottle default", name: "dev" },
      { label: "review", description: "bottle strict", name: "review" },
    ]);
  });

  it("shows a hostile agent name as text in the pick, and launches the name itself", async () => {
    const hostile = "$(pass) [dev](command:workbench.action.quit)\u202e";
    fake.activeEditorUri = Uri.parse(MANIFEST);
    server.answers.set("bottle.agents", [{ name: hostile, bottle: "b\x1b]8;;x\x07" }]);
    server.answers.set("bottle.launch", { slug: "x-1" });
    fake.pickAnswer = (items) => items[0];
    await actions.launch();
    assert.deepEqual(fake.quickPicks[0].items, [
      { label: "$\\x28pass) [dev]\\x28command:workbench.action.quit)\\u202e", description: "bottle b\\x1b]8;;x\\x07", name: hostile },
    ]);
    assert.deepEqual(server.requests.at(-1)?.args, [{ uri: MANIFEST, agent: hostile }]);
    assert.equal(fake.messages[0].message, "Bottle x-1 is running (agent $\\x28pass) [dev]\\x28command:workbench.action.quit)\\u202e).");
  });

  it("offers to attach once the bottle runs", async () => {
    server.answers.set("bottle.launch", { slug: "dev-2" });
    server.answers.set("bottle.attach", { command: ["bottle-engine", "attach", "dev-2"] });
    fake.messageAnswer = (message) => (message.actions.includes("Attach") ? "Attach" : undefined);
    await actions.launch({ uri: MANIFEST, agent: "dev" });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(fake.terminals[0]?.name, "Bottle dev-2");
  });

  it("asks which bottle.toml when the workspace has several and none is open", async () => {
    fake.workspaceFiles = [Uri.file("/workspace/b/bottle.toml"), Uri.file("/workspace/a/bottle.toml")];
    fake.pickAnswer = () => undefined;
    await actions.launch();
    assert.deepEqual((fake.quickPicks[0].items as { label: string }[]).map((item) => item.label), ["a/bottle.toml", "b/bottle.toml"]);
    assert.equal(server.requests.length, 0);
  });

  it("shows a bottle.toml's path as text when asking which one", async () => {
    // The agent names the directories of a workspace it wrote: an icon or a bidi override in
    // the pick would make its manifest read as another one.
    const hostile = "/workspace/$(verified) reviewed \u202elmot.elttob/bottle.toml";
    fake.workspaceFiles = [Uri.file("/workspace/a/bottle.toml"), Uri.file(hostile)];
    fake.pickAnswer = (items) => items[0];
    await actions.launch();
    const labels = (fake.quickPicks[0].items as { label: string }[]).map((item) => item.label);
    assert.deepEqual(labels, ["$\\x28verified) reviewed \\u202elmot.elttob/bottle.toml", "a/bottle.toml"]);
    assert.deepEqual(server.requests[0]?.args, [{ uri: Uri.file(hostile).toString() }], "the pick is the manifest shown");
  });

  it("explains a workspace without bottle.toml", async () => {
    await actions.launch();
    assert.match(errors()[0], /no bottle\.toml is open or in this workspace/);
  });

  it("shows the server's error sentence when the launch fails", async () => {
    server.answers.set("bottle.launch", new Error("bottle.toml:3:1: agents.dev.image: unknown key 'imge' (did you mean 'image'?)"));
    const slug = await actions.launch({ uri: MANIFEST, agent: "dev" });
    assert.equal(slug, undefined);
    assert.deepEqual(errors(), ["Bot Bottle: launch failed: bottle.toml:3:1: agents.dev.image: unknown key 'imge' (did you mean 'image'?)"]);
  });
});

describe("failures the server already reported", () => {
  it("are not shown a second time (the server answers {error} after window/showMessage)", async () => {
    server.answers.set("bottle.launch", { error: "Docker is not running: start it and launch again." });
    assert.equal(await actions.launch({ uri: MANIFEST, agent: "dev" }), undefined);
    server.answers.set("bottle.stop", { error: "no bottle 'x'" });
    await actions.stop({ slug: "x" });
    server.answers.set("bottle.attach", { error: "no bottle 'x'" });
    await actions.attach({ slug: "x" });
    assert.deepEqual(errors(), []);
    assert.equal(fake.terminals.length, 0);
    assert.ok(!fake.messages.some((m) => /stopped/.test(m.message)), "a failed stop is not reported as done");
  });
});

describe("Stop and logs", () => {
  it("stops with a confirmation pick even for a single bottle, then refreshes the view", async () => {
    server.answers.set("bottle.list", [{ slug: "only", status: "running" }]);
    server.answers.set("bottle.stop", {});
    await actions.stop();
    assert.equal(fake.quickPicks.length, 1);
    assert.deepEqual(server.requests.at(-1), { command: "bottle.stop", args: [{ slug: "only" }] });
    assert.equal(fake.progress[0].title, "Stopping bottle only");
    assert.equal(server.bottlesChangedCount, 1);
    assert.equal(fake.messages.at(-1)?.message, "Bottle only stopped.");
  });

  it("shows the egress log of a bottle from the view in a terminal", async () => {
    server.answers.set("bottle.logs", { command: ["bottle-engine", "logs", "--egress", "-f", "x"] });
    await actions.showLogs({ slug: "x", agent: "dev", backend: "docker", status: "running", started_at: "", manifest: "" });
    assert.deepEqual(server.requests[0].args, [{ slug: "x", egress: true }]);
    assert.equal(fake.terminals[0].name, "Egress log x");
  });

  it("passes a lens's egress: false through for the agent's own log", async () => {
    server.answers.set("bottle.logs", { command: ["bottle-engine", "logs", "x"] });
    await actions.handleServerCommand("bottle.logs", [{ slug: "x", egress: false }], undefined);
    assert.deepEqual(server.requests[0].args, [{ slug: "x", egress: false }]);
    assert.equal(fake.terminals[0].name, "Log x");
  });

  it("hands commands it does not own to the language client unchanged", async () => {
    const forwarded: unknown[] = [];
    const result = await actions.handleServerCommand("bottle.applyFix", [1, 2], async (command, args) => {
      forwarded.push(command, args);
      return "ok";
    });
    assert.equal(result, "ok");
    assert.deepEqual(forwarded, ["bottle.applyFix", [1, 2]]);
  });
});

describe("Review changes", () => {
  it("from the lens shows the difference in a modal and trusts exactly what was shown", async () => {
    server.answers.set("bottle.trustReview", TRUST_REVIEW);
    server.answers.set("bottle.trust", { ...TRUST_REVIEW, trusted: true, changes: [] });
    fake.messageAnswer = (message) => (message.modal ? "Trust" : undefined);
    const trusted = await actions.handleServerCommand("bottle.trust", [{ uri: MANIFEST, agent: "dev" }], undefined);
    assert.equal(trusted, true);
    const modal = fake.messages[0];
    assert.equal(modal.level, "warning");
    assert.equal(modal.modal, true);
    assert.deepEqual(modal.actions, ["Trust"]);
    assert.equal(modal.detail, "+ bottle web: allow + collector.example\n- bottle web: allow - old.example");
    assert.deepEqual(server.requests, [
      { command: "bottle.trustReview", args: [{ uri: MANIFEST }] },
      { command: "bottle.trust", args: [{ uri: MANIFEST, fingerprint: "f1ngerprint" }] },
    ]);
    assert.deepEqual(fake.messages[1], { level: "info", message: "Trusted /workspace/bottle.toml.", actions: ["Launch dev"] });
  });

  it("records nothing when the modal is dismissed", async () => {
    server.answers.set("bottle.trustReview", TRUST_REVIEW);
    const trusted = await actions.handleServerCommand("bottle.trust", [{ uri: MANIFEST, agent: "dev" }], undefined);
    assert.equal(trusted, false);
    assert.deepEqual(server.requests.map((r) => r.command), ["bottle.trustReview"]);
  });

  it("says so when nothing needs trust, without asking", async () => {
    server.answers.set("bottle.trustReview", { ...TRUST_REVIEW, trusted: true, changes: [] });
    assert.equal(await actions.reviewTrust({ uri: MANIFEST }), true);
    assert.deepEqual(fake.messages, [
      { level: "info", message: "/workspace/bottle.toml has no changes that need your trust.", actions: [] },
    ]);
  });

  it("makes no link or icon of the manifest's path or changes in what it shows", async () => {
    // A server that did not escape them, or a directory named so: a link in a notification
    // runs its command when clicked.
    const link = "[Trust](command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22id%5Cn%22%7D)";
    const manifest = `/workspace/${link}$(check)/bottle.toml`;
    server.answers.set("bottle.trustReview", { ...TRUST_REVIEW, manifest, changes: [{ text: `bottle web: secret from ~/${link}`, widening: true }] });
    server.answers.set("bottle.trust", { ...TRUST_REVIEW, manifest, trusted: true, changes: [] });
    fake.messageAnswer = (message) => (message.modal ? "Trust" : undefined);
    assert.equal(await actions.reviewTrust({ uri: MANIFEST }), true);
    server.answers.set("bottle.trustReview", { ...TRUST_REVIEW, manifest, trusted: true, changes: [] });
    assert.equal(await actions.reviewTrust({ uri: MANIFEST }), true);
    const shown = fake.messages.flatMap((m) => [m.message, m.detail ?? ""]);
    assert.equal(shown.length, 6);
    for (const text of shown) assert.ok(!text.includes("](") && !text.includes("$("), text);
  });

  it("leaves a refusal the server already showed to the server", async () => {
    server.answers.set("bottle.trustReview", TRUST_REVIEW);
    server.answers.set("bottle.trust", { error: "changed after it was reviewed" });
    fake.messageAnswer = (message) => (message.modal ? "Trust" : undefined);
    assert.equal(await actions.reviewTrust({ uri: MANIFEST }), false);
    assert.deepEqual(errors(), []);
  });
});
