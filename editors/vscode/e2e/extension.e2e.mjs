// End-to-end test of the packaged extension in a real editor: code-server (VS Code 1.100 in a
// browser) with bot-bottle.vsix installed, driven through Debian's Chromium by playwright-core,
// talking to the real bottle-lsp from this repository.
//
// Opt-in (it needs ./setup.sh, the built .vsix and bottle-lsp on PATH):
//   BOT_BOTTLE_VSCODE_E2E=1 node --test e2e/extension.e2e.mjs     (or scripts/e2e.sh)
// Everything listens on and talks to 127.0.0.1 only: code-server binds there, its update
// check, telemetry and extension gallery are off, and the browser aborts any request to
// another host (the test fails if one was attempted).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const extensionRoot = path.join(here, "..");
const enabled = process.env.BOT_BOTTLE_VSCODE_E2E === "1";
const vsix = process.env.BOT_BOTTLE_VSIX ?? path.join(extensionRoot, "bot-bottle.vsix");
const codeServer = path.join(here, "node_modules", ".bin", "code-server");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = path.join(here, "artifacts");
const LOOPBACK = "127.0.0.1";
const repoRoot = path.resolve(extensionRoot, "..", "..");
const CLOSED_LOOPBACK_URL = "http://127.0.0.1:9"; // discard port: nothing listens there

const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-domain-reliability",
  "--no-pings",
];

// The editor settings of a machine that must not phone home.
const USER_SETTINGS = {
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "workbench.enableExperiments": false,
  "workbench.settings.enableNaturalLanguageSearch": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "security.workspace.trust.enabled": false,
  "npm.fetchOnlinePackageInfo": false,
  "json.schemaDownload.enable": false,
  "typescript.disableAutomaticTypeAcquisition": true,
  "git.enabled": false,
  "chat.disableAIFeatures": true,
  "editor.codeLens": true,
  "botBottle.bottles.refreshInterval": 2,
};

// One valid agent (gets a Launch lens) and one key the schema does not know (a diagnostic).
const MANIFEST = `[agents.hello]
command = ["bash", "-c", "echo hello"]
prompt = "You are a sample agent."

[agents.typo]
command = ["true"]
imge = "x"

[bottles.default]
memory = "1g"

[bottles.default.egress]
allow = ["allowed.invalid"]
`;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok || response.status === 302) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

/** Is a process of the group `pgid` still running? */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Ends code-server and every process of its group: the extension hosts (each about 80 MB)
 * outlived a SIGTERM to code-server alone, one set per editor the tests started. SIGKILL after
 * 10 s for whatever is left.
 */
async function endGroup(child) {
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once("exit", resolve));
  if (groupAlive(child.pid)) process.kill(-child.pid, "SIGTERM");
  await exited;
  const deadline = Date.now() + 10_000;
  while (groupAlive(child.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  if (groupAlive(child.pid)) process.kill(-child.pid, "SIGKILL");
}

/**
 * code-server with the .vsix installed, a workspace holding `manifestText` as bottle.toml, and
 * Chromium on it. `close()` removes everything and writes logs/screenshots to e2e/artifacts.
 */
async function startEditor(name, manifestText, extraEnv = {}, extraSettings = {}) {
  assert.ok(fs.existsSync(vsix), `${vsix} is missing: run npm run package first`);
  assert.ok(fs.existsSync(codeServer), `${codeServer} is missing: run e2e/setup.sh first`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "bot-bottle-e2e-"));
  const userData = path.join(root, "user-data");
  const extensionsDir = path.join(root, "extensions");
  const workspace = path.join(root, "workspace");
  fs.mkdirSync(path.join(userData, "User"), { recursive: true });
  fs.mkdirSync(workspace);
  fs.writeFileSync(path.join(userData, "User", "settings.json"), JSON.stringify({ ...USER_SETTINGS, ...extraSettings }, null, 2));
  fs.writeFileSync(path.join(workspace, "bottle.toml"), manifestText);
  const config = path.join(root, "config.yaml");
  fs.writeFileSync(config, "auth: none\ncert: false\n");
  const blockedRequests = [];
  let serverLog = "";
  let server;
  let context;
  let page;

  const close = async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    if (page !== undefined) {
      await page.screenshot({ path: path.join(artifacts, `${name}-last.png`) }).catch(() => undefined);
    }
    await context?.close().catch(() => undefined);
    if (server !== undefined) await endGroup(server);
    fs.writeFileSync(path.join(artifacts, `${name}-code-server.log`), serverLog);
    fs.rmSync(root, { recursive: true, force: true });
  };

  try {
    const env = {
      ...process.env,
      // The extension gallery points at a closed loopback port: no marketplace traffic.
      EXTENSIONS_GALLERY: JSON.stringify({
        serviceUrl: `${CLOSED_LOOPBACK_URL}/gallery`,
        itemUrl: `${CLOSED_LOOPBACK_URL}/item`,
        resourceUrlTemplate: `${CLOSED_LOOPBACK_URL}/resource/{publisher}/{name}/{version}/{path}`,
      }),
      BOTTLE_STATE_DIR: path.join(root, "state"),
      ...extraEnv,
    };
    const common = ["--config", config, "--user-data-dir", userData, "--extensions-dir", extensionsDir];
    const install = spawnSync(codeServer, [...common, "--install-extension", vsix], { env, encoding: "utf8" });
    assert.equal(install.status, 0, `installing the .vsix failed:\n${install.stdout}\n${install.stderr}`);

    const port = await freePort();
    server = spawn(
      codeServer,
      [
        ...common,
        "--bind-addr", `${LOOPBACK}:${port}`,
        "--auth", "none",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--disable-getting-started-override",
        "--disable-proxy",
        "--ignore-last-opened",
        workspace,
      ],
      // A process group of its own: the extension hosts it forks outlive it otherwise.
      { env, stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    server.stdout.on("data", (chunk) => (serverLog += chunk));
    server.stderr.on("data", (chunk) => (serverLog += chunk));
    const url = `http://${LOOPBACK}:${port}/`;
    await waitForHttp(`${url}healthz`, server, 60_000);

    const { chromium } = await import(path.join(here, "node_modules", "playwright-core", "index.mjs"));
    context = await chromium.launchPersistentContext(path.join(root, "chromium-profile"), {
      executablePath: chromiumPath,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1400, height: 900 },
    });
    // Loopback only: anything else is aborted and recorded (asserted empty by the tests).
    await context.route("**/*", (route) => {
      const target = new URL(route.request().url());
      const remote = ["http:", "https:", "ws:", "wss:"].includes(target.protocol);
      if (remote && target.hostname !== LOOPBACK && target.hostname !== "localhost") {
        blockedRequests.push(target.href);
        return route.abort();
      }
      return route.continue();
    });
    page = context.pages()[0] ?? (await context.newPage());
    await page.goto(`${url}?folder=${encodeURIComponent(workspace)}`);
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
  } catch (error) {
    await close();
    throw error;
  }
  return {
    page,
    workspace,
    stateDir: path.join(root, "state"),
    blockedRequests,
    close,
    shot: (file) => page.screenshot({ path: path.join(artifacts, file) }),
  };
}

async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor();
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor();
  await page.keyboard.press("Enter");
}

async function openManifest(page) {
  const explorer = page.locator(".explorer-folders-view .monaco-list-row", { hasText: "bottle.toml" }).first();
  if (!(await explorer.isVisible())) await runCommand(page, "View: Show Explorer");
  await explorer.click();
  await page.locator(".monaco-editor .view-lines").first().waitFor();
}

/** The code lens link `title` (e.g. "▶ Launch") in the open editor. */
function lens(page, title) {
  return page.locator(".contentWidgets .codelens-decoration a", { hasText: title });
}

/** A view of the Bot Bottle container ("Bottles", "Egress"). */
function pane(page, title) {
  return page.locator(".pane", { has: page.locator(".pane-header", { hasText: title }) });
}

/** Rows of the Bottles view (not of the notifications list, which is a list too). */
function bottleRows(page, slug) {
  return pane(page, "Bottles").locator(".monaco-list-row", { hasText: slug });
}

/** The Egress view's first row that mentions `host`. */
function egressRow(page, host) {
  return pane(page, "Egress").locator(".monaco-list-row", { hasText: host }).first();
}

/**
 * Opens the Egress view and waits for one refused and one allowed host in it; returns the
 * view's text for more checks (a bottle's first requests can take a while to be audited).
 */
async function egressShowsOneDeniedOneAllowed(page, denied, allowed) {
  await showBotBottle(page);
  await egressRow(page, denied).waitFor({ timeout: 60_000 });
  await egressRow(page, allowed).waitFor({ timeout: 30_000 });
  const rows = (await pane(page, "Egress").locator(".monaco-list-row").allInnerTexts()).join("\n");
  assert.match(rows, /Denied \(1\)/, rows);
  assert.match(rows, /Allowed \(1\)/, rows);
  return rows;
}

/** The Allow action of an Egress row, shown while the row is hovered. */
async function hoverAllow(row) {
  await row.hover();
  return row.locator('.action-label[aria-label="Allow"]');
}

/** The open editor's text as a person reads it (the editor lays spaces out as U+00A0). */
async function editorText(page) {
  return (await page.locator(".monaco-editor .view-lines").first().innerText()).replace(/\u00a0/g, " ");
}

/** Waits until the open editor shows `text` (an edit the extension made, not yet saved). */
async function waitForEditorText(page, text) {
  await page.waitForFunction((wanted) => document.querySelector(".monaco-editor .view-lines")?.innerText.replace(/\u00a0/g, " ").includes(wanted), text, { timeout: 30_000 });
}

/** Opens the Bot Bottle view container (Bottles and Egress), as the status-bar item does. */
async function showBotBottle(page) {
  await runCommand(page, "Bot Bottle: Show Bottles and Egress");
  await page.locator(".pane-header", { hasText: "Bottles" }).first().waitFor({ timeout: 30_000 });
}

/** Runs Python against the editor's state dir (the engine's own API, as the bundle uses it). */
function python(editor, code) {
  const result = spawnSync(process.env.PYTHON ?? "python3", ["-c", code], {
    env: { ...process.env, BOTTLE_STATE_DIR: editor.stateDir, PYTHONPATH: repoRoot },
    encoding: "utf8",
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim();
}

function toasts(page) {
  return page.locator(".notifications-toasts .notification-toast");
}

const skipUnlessEnabled = enabled ? false : "set BOT_BOTTLE_VSCODE_E2E=1 (see scripts/e2e.sh)";

describe("bottle.toml in code-server", { skip: skipUnlessEnabled }, () => {
  let editor;
  before(async () => {
    editor = await startEditor("manifest", MANIFEST);
  });
  after(async () => {
    await editor?.close();
  });

  it("shows the server's diagnostics and a Launch code lens per agent", async () => {
    const { page } = editor;
    await openManifest(page);
    await lens(page, "Launch").first().waitFor({ timeout: 60_000 });
    assert.equal(await lens(page, "Launch").count(), 2, "one lens per [agents.NAME]");
    await page.locator(".monaco-editor .squiggly-error").first().waitFor({ timeout: 60_000 });
    await runCommand(page, "View: Focus Problems");
    const problems = page.locator(".markers-panel .monaco-list-row");
    await problems.first().waitFor({ timeout: 30_000 });
    const text = (await problems.allInnerTexts()).join("\n");
    assert.match(text, /agents\.typo\.imge: unknown key 'imge'/, `Problems panel: ${text}`);
    await editor.shot("diagnostics-and-lens.png");
  });

  it("lists the Bot Bottle commands in the palette and has a Bottles view", async () => {
    const { page } = editor;
    await page.keyboard.press("Escape");
    await page.keyboard.press("F1");
    await page.locator(".quick-input-widget input").fill(">Bot Bottle:");
    const rows = page.locator(".quick-input-list .monaco-list-row");
    await rows.first().waitFor();
    const titles = (await rows.allInnerTexts()).join("\n");
    for (const title of ["Launch Bottle", "Attach to Bottle", "Stop Bottle", "Show Egress Log", "Restart Language Server"]) {
      assert.match(titles, new RegExp(`Bot Bottle: ${title}`), `palette lists ${title}:\n${titles}`);
    }
    await page.keyboard.press("Escape");
    await showBotBottle(page);
    await page.locator(".pane-header", { hasText: "Egress" }).waitFor({ timeout: 30_000 });
    await openManifest(page);
  });

  it("palette Launch offers the manifest's agents in a Quick Pick", async () => {
    const { page } = editor;
    await runCommand(page, "Bot Bottle: Launch Bottle");
    const rows = page.locator(".quick-input-list .monaco-list-row");
    await rows.filter({ hasText: "typo" }).first().waitFor({ timeout: 30_000 });
    const labels = (await rows.allInnerTexts()).join("\n");
    assert.match(labels, /hello/);
    assert.match(labels, /typo/);
    await editor.shot("agent-pick.png");
    await page.keyboard.press("Escape");
  });

  it("a Launch lens on an invalid manifest shows the server's one error sentence, no stack trace", async () => {
    const { page } = editor;
    await lens(page, "Launch").first().click();
    const error = toasts(page).filter({ hasText: /bottle\.toml has 1 error/ });
    await error.first().waitFor({ timeout: 60_000 });
    await editor.shot("launch-refused.png");
    // The launch's progress notification closes once the server has answered.
    await toasts(page).filter({ hasText: "Launching bottle for agent hello" }).first().waitFor({ state: "detached", timeout: 15_000 });
    const text = (await toasts(page).allInnerTexts()).join("\n");
    assert.doesNotMatch(text, /Bot Bottle: launch failed|resulted in an error|TypeError/, text);
  });

  it("an approval request from a bottle appears with Approve / Deny, and Approve answers it", async () => {
    const { page } = editor;
    // Asked the way the bundle's supervise server asks: through the engine's ApprovalStore.
    const requestId = python(editor, `
from bottle_engine import approvals, state
directory = state.bottle_dir("e2e-approvals")
directory.mkdir(parents=True, exist_ok=True)
store = approvals.ApprovalStore(directory, "e2e-approvals")
print(store.open_request("git push origin main", "release the fix", 600).id)
`);
    const prompt = toasts(page).filter({ hasText: "Approval requested by bottle e2e-approvals" });
    await prompt.first().waitFor({ timeout: 30_000 });
    assert.match(await prompt.first().innerText(), /git push origin main/);
    await editor.shot("approval.png");
    await prompt.first().getByRole("button", { name: "Deny" }).waitFor();
    await prompt.first().getByRole("button", { name: "Approve" }).click();
    const status = () =>
      python(editor, `
from bottle_engine import approvals, state
print(approvals.ApprovalStore(state.bottle_dir("e2e-approvals"), "e2e-approvals").get("${requestId}").status)
`);
    const deadline = Date.now() + 15_000;
    while (status() !== "approved") {
      assert.ok(Date.now() < deadline, `the request is still ${status()}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });

  it("Restart Language Server brings the diagnostics and lenses back without an error", async () => {
    const { page } = editor;
    await runCommand(page, "Bot Bottle: Restart Language Server");
    // While the new server starts the lenses go away; then they and the diagnostics return.
    await lens(page, "Launch").first().waitFor({ timeout: 60_000 });
    await page.locator(".monaco-editor .squiggly-error").first().waitFor({ timeout: 60_000 });
    const text = (await toasts(page).allInnerTexts()).join("\n");
    assert.doesNotMatch(text, /not installed|could not be started|Connection to server/, text);
  });

  it("sent no request off this machine", () => {
    assert.deepEqual(editor.blockedRequests, []);
  });
});

// What a bottle does, in the editor: the real bottle-lsp follows a bottle's audit log, written
// here with the proxy's own AuditLog; the bottles list comes from the LSP tests' fake engine
// (a whole bottle on Docker is the launch suite below).
const ACTIVITY_MANIFEST = `# the team's bottle
[agents.dev]
bottle = "web"
command = ["bash", "-c", "echo hello"]

[bottles.web]  # keep this comment
memory = "1g"

[bottles.web.egress]
allow = ["upstream.test"]  # our test host
`;

describe("what a bottle does, in code-server", { skip: skipUnlessEnabled }, () => {
  let editor;
  const engineState = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bot-bottle-e2e-engine-")), "fake-engine.json");
  const audit = (lines) =>
    python(editor, `
import json, sys
from bottle_engine import state
from bottle_engine.bundle.audit import AuditEntry, AuditLog
log = AuditLog(state.bottle_dir("dev-1") / "egress.jsonl")
for raw in json.loads(sys.argv[1] if len(sys.argv) > 1 else ${JSON.stringify(JSON.stringify(lines))}):
    log.write(AuditEntry.from_dict({"time": "2026-11-30T04:00:00.000+00:00", "method": "GET", "port": 80, "reason": "", "kind": "http", **raw}))
`);

  before(async () => {
    // The real server around the tests' stand-in engine (its bottles: records in engineState).
    const fakeServer = [
      process.env.PYTHON ?? "python3", "-m", "tests.lsp.fake_server",
      "--state", engineState,
      "--log-file", path.join(path.dirname(engineState), "server.log"),
      "--activity-interval", "0.5",
    ];
    editor = await startEditor(
      "activity",
      ACTIVITY_MANIFEST,
      { PYTHONPATH: repoRoot },
      { "botBottle.server.command": fakeServer },
    );
  });
  after(async () => {
    await editor?.close();
    const serverLog = path.join(path.dirname(engineState), "server.log");
    if (fs.existsSync(serverLog)) {
      fs.copyFileSync(serverLog, path.join(artifacts, "activity-language-server.log"));
    }
    fs.rmSync(path.dirname(engineState), { recursive: true, force: true });
  });

  it("colours bottle.toml with the extension's TOML grammar on open", async () => {
    const { page } = editor;
    await openManifest(page);
    await page.locator(".statusbar-item", { hasText: "Bottle TOML" }).first().waitFor({ timeout: 30_000 });
    // The cursor in the table header `[agents.dev]`, then VS Code's own token inspector.
    const header = page.locator(".view-lines .view-line span span", { hasText: "agents" }).first();
    await header.waitFor({ timeout: 30_000 });
    await header.click();
    await runCommand(page, "Developer: Inspect Editor Tokens and Scopes");
    const inspector = page.locator(".token-inspect-widget");
    await inspector.waitFor({ timeout: 30_000 });
    const text = await inspector.innerText();
    assert.match(text, /\S+\.toml\b/, text);
    assert.match(text, /meta\.table\.toml/, text);
    assert.match(text, /source\.toml\.bottle/, text);
    await editor.shot("toml-colouring.png");
    await page.keyboard.press("Escape");
    // The comment and the table name are drawn in different colours (different token classes).
    const comment = await page.locator(".view-lines .view-line span span", { hasText: /team/ }).first().getAttribute("class");
    const table = await header.getAttribute("class");
    assert.notEqual(comment, table);
  });

  it("the Egress view fills live with allowed and denied hosts, and the status bar counts the bottle", async () => {
    const { page } = editor;
    fs.writeFileSync(engineState, JSON.stringify({ bottles: [{
      slug: "dev-1", agent: "dev", bottle: "web", backend: "docker", status: "running",
      started_at: new Date().toISOString(), manifest: path.join(editor.workspace, "bottle.toml"),
      resources: { runtime: "runsc" },
    }] }));
    audit([
      { host: "upstream.test", decision: "allow", rule: "upstream.test", bytes_received: 2048 },
      { host: "stranger.test", decision: "deny", rule: "default-deny", reason: "GET stranger.test:80 is not on the egress allowlist" },
    ]);
    const rows = await egressShowsOneDeniedOneAllowed(page, "stranger.test", "upstream.test");
    assert.match(rows, /2\.0 KB/, rows);
    // Live: a refusal written now appears without any action in the editor.
    audit([{ host: "other.test", decision: "deny", rule: "default-deny" }]);
    await egressRow(page, "other.test").waitFor({ timeout: 30_000 });
    const status = page.locator(".statusbar-item", { hasText: /^\s*1\s*$/ }).filter({ has: page.locator(".codicon-vm") });
    await status.first().waitFor({ timeout: 30_000 });
    const row = bottleRows(page, "dev-1");
    await row.first().waitFor({ timeout: 30_000 });
    // The Bottles view refreshes on its own push: wait for this row to count the new refusal.
    const counted = row.filter({ hasText: /2 denied/ });
    await counted.first().waitFor({ timeout: 30_000 });
    assert.match(await counted.first().innerText(), /dev · docker · gVisor · up \S+ · 2 denied/);
    await editor.shot("egress-view.png");
  });

  it("a pending approval shows in the status bar and the Bottles view", async () => {
    const { page } = editor;
    python(editor, `
from bottle_engine import approvals, state
store = approvals.ApprovalStore(state.bottle_dir("dev-1"), "dev-1")
store.open_request("git push origin main", "release", 600)
`);
    // Our item (the vm icon), now with a bell: not VS Code's own notifications bell.
    const status = page.locator(".statusbar-item").filter({ has: page.locator(".codicon-vm") }).filter({ has: page.locator(".codicon-bell") });
    await status.first().waitFor({ timeout: 30_000 });
    assert.match(await status.first().innerText(), /1\s*1/);
    await page.waitForFunction(() => /1 pending · 2 denied/.test(document.body.innerText), null, { timeout: 30_000 });
    await editor.shot("status-bar.png");
  });

  it("Allow on a denied host adds it to the bottle's allow in bottle.toml, comments kept", async () => {
    const { page } = editor;
    await (await hoverAllow(egressRow(page, "stranger.test"))).click();
    await waitForEditorText(page, 'allow = ["upstream.test", "stranger.test"]  # our test host');
    const shown = await editorText(page);
    assert.match(shown, /\[bottles\.web\]  # keep this comment/);
    assert.match(shown, /# the team's bottle/);
    await toasts(page).filter({ hasText: "Added stranger.test" }).first().waitFor({ timeout: 30_000 });
    // The edit waits for the person to save it: the file on disk is unchanged.
    assert.equal(fs.readFileSync(path.join(editor.workspace, "bottle.toml"), "utf8"), ACTIVITY_MANIFEST);
    await editor.shot("allow-edit.png");
    // An IP-literal or address refusal offers no Allow at all.
    audit([{ host: "10.9.8.7", decision: "deny", rule: "ip-literal" }]);
    const ip = egressRow(page, "10.9.8.7");
    await ip.waitFor({ timeout: 30_000 });
    assert.equal(await (await hoverAllow(ip)).count(), 0);
  });

  it("sent no request off this machine", () => {
    assert.deepEqual(editor.blockedRequests, []);
  });
});

describe("a server that cannot start", { skip: skipUnlessEnabled }, () => {
  let editor;
  before(async () => {
    editor = await startEditor("missing-server", MANIFEST, {}, {
      "botBottle.server.command": ["/nonexistent/bottle-lsp"],
    });
  });
  after(async () => {
    await editor?.close();
  });

  it("is one clear error naming the setting and the pip install command", async () => {
    const { page } = editor;
    await openManifest(page);
    const error = toasts(page).filter({ hasText: "botBottle.server.command" });
    await error.first().waitFor({ timeout: 60_000 });
    const text = await error.first().innerText();
    assert.match(text, /\/nonexistent\/bottle-lsp/);
    assert.match(text, /pip install bot-bottle/);
    assert.match(text, /Open Settings/);
    await editor.shot("missing-server.png");
    assert.equal(await toasts(page).filter({ hasText: "botBottle.server.command" }).count(), 1, "said once, no crash loop");
    await showBotBottle(page);
    await page.getByText("The Bot Bottle language server is not running").first().waitFor({ timeout: 10_000 });
  });
});

// A whole launch on the real daemon: opt-in on top of the editor tests, because the first run
// builds the agent and bundle images (minutes; later runs reuse the stored artifacts).
const launchEnabled = enabled && process.env.BOT_BOTTLE_VSCODE_E2E_LAUNCH === "1";
const LAUNCH_MANIFEST = `[agents.hello]
command = ["bash", "-c", "echo hello from the bottle; exec sleep infinity"]
prompt = "You are a sample agent."
copy_cwd = false

[bottles.default]
dockerfile = ${JSON.stringify(path.join(repoRoot, "Dockerfile"))}
context = ${JSON.stringify(repoRoot)}
memory = "512m"
cpus = 1

[bottles.default.egress]
allow = ["allowed.invalid"]
`;

describe("launching a bottle from code-server", {
  skip: launchEnabled ? false : "set BOT_BOTTLE_VSCODE_E2E=1 and BOT_BOTTLE_VSCODE_E2E_LAUNCH=1 (needs Docker)",
}, () => {
  let editor;
  let slug;
  const engineEnv = () => ({ ...process.env, BOTTLE_STATE_DIR: editor.stateDir });

  before(async () => {
    const extraEnv = { BOTTLE_BASE_IMAGE: process.env.BOTTLE_BASE_IMAGE ?? "bot-bottle/base:bookworm" };
    const caBundle = "/etc/ssl/certs/ca-certificates.crt";
    if (process.env.BOTTLE_CA_BUNDLE === undefined && fs.existsSync(caBundle)) extraEnv.BOTTLE_CA_BUNDLE = caBundle;
    editor = await startEditor("launch", LAUNCH_MANIFEST, extraEnv);
  });

  after(async () => {
    if (editor === undefined) return;
    // Whatever the test left running is removed with the engine's own stop --rm.
    const listed = spawnSync("bottle-engine", ["ls", "--json"], { env: engineEnv(), encoding: "utf8" });
    const slugs = listed.status === 0 ? JSON.parse(listed.stdout).map((record) => record.slug) : [];
    for (const leftover of new Set([...slugs, ...(slug ? [slug] : [])])) {
      spawnSync("bottle-engine", ["stop", "--rm", leftover], { env: engineEnv(), encoding: "utf8" });
    }
    await editor.close();
  });

  it("a Launch lens starts the bottle with stage progress, then offers Attach", async (t) => {
    const { page } = editor;
    await openManifest(page);
    await lens(page, "Launch").first().waitFor({ timeout: 60_000 });
    await lens(page, "Launch").first().click();
    const progress = toasts(page).filter({ hasText: "Launching bottle for agent hello" });
    await progress.first().waitFor({ timeout: 30_000 });
    await editor.shot("launch-progress.png");
    const running = toasts(page).filter({ hasText: /Bottle \S+ is running \(agent hello\)\./ });
    // Collect what the progress notification says while the launch runs: the engine's stages.
    const seen = new Set();
    const deadline = Date.now() + 20 * 60_000;
    while ((await running.count()) === 0) {
      assert.ok(Date.now() < deadline, `no launch result; progress said: ${[...seen].join(" | ")}`);
      for (const line of await progress.allInnerTexts().catch(() => [])) seen.add(line.trim());
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const stages = [...seen].filter((line) => !/^Launching bottle for agent hello(: Launching hello)?$/.test(line));
    assert.ok(stages.length > 0, `the notification showed the launch stages, saw: ${[...seen].join(" | ")}`);
    t.diagnostic(`progress notification: ${[...seen].join(" | ")}`);
    const text = await running.first().innerText();
    slug = /Bottle (\S+) is running/.exec(text)[1];
    assert.match(text, /Attach/);
    await editor.shot("launched.png");
  });

  it("the Bottles view lists it with agent, backend and age", async () => {
    const { page } = editor;
    assert.ok(slug, "launched");
    await showBotBottle(page);
    const row = bottleRows(page, slug);
    await row.first().waitFor({ timeout: 30_000 });
    assert.match(await row.first().innerText(), /hello · docker · (gVisor|runc) · up \d+[smh]/);
    await editor.shot("bottles-view.png");
  });

  it("Attach in the Bottles view opens a terminal on the bottle", async () => {
    const { page } = editor;
    const row = bottleRows(page, slug).first();
    await row.hover();
    await row.locator('.action-label[aria-label="Attach to Bottle"]').click();
    const terminal = page.locator(".terminal-tabs-entry, .single-terminal-tab, .pane-header", { hasText: `Bottle ${slug}` });
    await terminal.first().waitFor({ timeout: 30_000 });
    await editor.shot("attached.png");
  });

  it("Show Egress Log opens the bottle's egress audit log in a terminal", async () => {
    const { page } = editor;
    // One bottle runs, so the command needs no pick.
    await runCommand(page, "Bot Bottle: Show Egress Log");
    const terminal = page.locator(".terminal-tabs-entry, .single-terminal-tab, .pane-header", { hasText: `Egress log ${slug}` });
    await terminal.first().waitFor({ timeout: 30_000 });
    await editor.shot("egress-log.png");
  });

  it("the lenses above [agents.hello] offer Attach and Stop while it runs", async () => {
    const { page } = editor;
    // The server asks for a lens refresh (workspace/codeLens/refresh) when the launch ends, but
    // VS Code drops a refresh that is pending when the editor loses focus (the clicks in the
    // Bottles view since) and runs it when the editor has focus again: back to the manifest.
    await page.locator(".monaco-editor .view-lines").first().click();
    await lens(page, "Stop").first().waitFor({ timeout: 60_000 });
    await lens(page, "Attach").first().waitFor({ timeout: 10_000 });
  });

  it("Stop in the Bottles view stops it and the view empties", async () => {
    const { page } = editor;
    const row = bottleRows(page, slug).first();
    await row.hover();
    await row.locator('.action-label[aria-label="Stop Bottle"]').click();
    await page.waitForTimeout(1000);
    await editor.shot("stopping.png");
    await toasts(page).filter({ hasText: `Bottle ${slug} stopped.` }).first().waitFor({ timeout: 120_000 });
    await bottleRows(page, slug).first().waitFor({ state: "detached", timeout: 30_000 });
    await editor.shot("stopped.png");
  });

  it("sent no request off this machine", () => {
    assert.deepEqual(editor.blockedRequests, []);
  });
});


// A real bottle in the test world of tests/bottle_fixtures.py (test hosts upstream.test, listed,
// and stranger.test, not listed, on a network the pytest run created): its agent makes both
// requests and the Egress view fills from the real proxy's audit log. Run by
// tests/test_vscode_extension.py, which passes the world as BOT_BOTTLE_VSCODE_E2E_WORLD.
const world = process.env.BOT_BOTTLE_VSCODE_E2E_WORLD ? JSON.parse(process.env.BOT_BOTTLE_VSCODE_E2E_WORLD) : undefined;

describe("a real bottle's egress in code-server", {
  skip: enabled && world !== undefined ? false : "set BOT_BOTTLE_VSCODE_E2E=1 and BOT_BOTTLE_VSCODE_E2E_WORLD (tests/test_vscode_extension.py does)",
}, () => {
  let editor;
  let slug;
  const manifestText = world === undefined ? "" : fs.readFileSync(world.manifest, "utf8");
  const worldEnv = () => ({ ...process.env, ...world.env, BOTTLE_STATE_DIR: editor.stateDir, PYTHONPATH: repoRoot });
  // The real server, logging what it follows: a view that stays empty is explained there.
  const serverLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bot-bottle-e2e-lsp-")), "server.log");
  const python = process.env.PYTHON ?? "python3";

  /** What the server logged and what the proxy audited, for a view that did not fill. */
  const whatTheServerSaw = () => {
    const audit = spawnSync(python, ["-c", `
import sys
from bottle_engine.bottle_dir import BottleDir
log = BottleDir.of(sys.argv[1]).egress_log
print(log, log.read_text() if log.is_file() else "(none)")
`, slug ?? ""], { env: worldEnv(), encoding: "utf8" });
    const logged = fs.existsSync(serverLog) ? fs.readFileSync(serverLog, "utf8") : "(no server log)";
    return `\n--- audit log ---\n${audit.stdout}${audit.stderr}\n--- server log ---\n${logged.slice(-4000)}`;
  };

  before(async () => {
    // The world's images, networks and host names; this editor's own state dir, so only its
    // own bottle shows.
    const { BOTTLE_STATE_DIR: _, ...imagesAndHosts } = world.env;
    editor = await startEditor("real-egress", manifestText, { ...imagesAndHosts, PYTHONPATH: repoRoot }, {
      "botBottle.server.command": [python, "-m", "bottle_lsp", "--log-level", "INFO", "--log-file", serverLog],
    });
  });

  after(async () => {
    if (editor === undefined) return;
    if (slug) spawnSync(python, ["-m", "bottle_engine", "stop", "--rm", slug], { env: worldEnv(), encoding: "utf8" });
    await editor.close();
    if (fs.existsSync(serverLog)) fs.copyFileSync(serverLog, path.join(artifacts, "real-egress-language-server.log"));
    fs.rmSync(path.dirname(serverLog), { recursive: true, force: true });
  });

  it("launches the bottle from the palette", async () => {
    const { page } = editor;
    await openManifest(page);
    await lens(page, "Launch").first().waitFor({ timeout: 60_000 });
    await runCommand(page, "Bot Bottle: Launch Bottle");
    const rows = page.locator(".quick-input-list .monaco-list-row");
    await rows.filter({ hasText: /^editor/ }).first().waitFor({ timeout: 30_000 });
    await rows.filter({ hasText: /^editor/ }).first().click();
    const running = toasts(page).filter({ hasText: /Bottle \S+ is running \(agent editor\)\./ });
    await running.first().waitFor({ timeout: 15 * 60_000 });
    slug = /Bottle (\S+) is running/.exec(await running.first().innerText())[1];
  });

  it("fills the Egress view as the agent reaches upstream.test and is refused stranger.test", async () => {
    const { page } = editor;
    assert.ok(slug, "launched");
    const curl = spawnSync(python, ["-c", `
import sys
from bottle_engine import lifecycle
from bottle_engine.backends import backend_named
record = lifecycle.find(sys.argv[1])
for host in ("upstream.test", "stranger.test"):
    code, out = backend_named("docker").exec_as_agent(record, ["sh", "-c", 'curl -sS -m 30 -x "$HTTP_PROXY" -o /dev/null -w "%{http_code}" "$0"', f"http://{host}:8000/"])
    print(host, code, out)
`, slug], { env: worldEnv(), encoding: "utf8" });
    assert.equal(curl.status, 0, curl.stderr);
    assert.match(curl.stdout, /upstream\.test 0 200/);
    assert.match(curl.stdout, /stranger\.test \d+ 403/);
    try {
      await egressShowsOneDeniedOneAllowed(page, "stranger.test:8000", "upstream.test:8000");
    } catch (error) {
      error.message += whatTheServerSaw();
      throw error;
    }
    const status = page.locator(".statusbar-item").filter({ has: page.locator(".codicon-vm") });
    assert.match(await status.first().innerText(), /^\s*1\s*$/);
    const bottle = bottleRows(page, slug).first();
    await bottle.waitFor({ timeout: 30_000 });
    const counted = bottleRows(page, slug).filter({ hasText: /1 denied/ });
    await counted.first().waitFor({ timeout: 30_000 });
    assert.match(await counted.first().innerText(), /editor · docker · (gVisor|runc) · up \S+ · 1 denied/);
    await editor.shot("real-egress-view.png");
  });

  it("Allow on stranger.test adds stranger.test:8000 to the bottle's allow in the editor", async () => {
    const { page } = editor;
    await (await hoverAllow(egressRow(page, "stranger.test:8000"))).click();
    await toasts(page).filter({ hasText: "Added stranger.test:8000" }).first().waitFor({ timeout: 30_000 });
    // The editor is put on the new entry (the allow line is below the first screen here).
    await waitForEditorText(page, '"stranger.test:8000"');
    assert.equal(fs.readFileSync(path.join(editor.workspace, "bottle.toml"), "utf8"), manifestText, "not saved for the person");
    await editor.shot("real-allow.png");
  });

  it("sent no request off this machine", () => {
    assert.deepEqual(editor.blockedRequests, []);
  });
});
