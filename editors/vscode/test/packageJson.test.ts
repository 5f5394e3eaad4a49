import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { ExtensionCommand } from "../src/common";
import { MANIFEST_GLOB, MANIFEST_GLOBS } from "../src/manifests";
import { findOnPath } from "../src/serverCommand";

const root = path.join(__dirname, "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const contributes = manifest.contributes;

describe("package.json", () => {
  it("contributes exactly the commands the extension registers, under 'Bot Bottle'", () => {
    const contributed = contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual(contributed, Object.values(ExtensionCommand).sort());
    for (const command of contributes.commands) assert.equal(command.category, "Bot Bottle");
    const titles = contributes.commands.map((c: { title: string }) => c.title);
    for (const title of ["Launch Bottle", "Attach to Bottle", "Stop Bottle", "Show Egress Log", "Restart Language Server"]) {
      assert.ok(titles.includes(title), `palette has "Bot Bottle: ${title}"`);
    }
  });

  it("menus only name contributed commands", () => {
    const known = new Set(Object.values(ExtensionCommand) as string[]);
    for (const [menu, entries] of Object.entries(contributes.menus as Record<string, { command: string }[]>)) {
      for (const entry of entries) assert.ok(known.has(entry.command), `${menu} names ${entry.command}`);
    }
  });

  it("has a Bot Bottle view container with the Bottles and Egress views", () => {
    assert.deepEqual(contributes.viewsContainers.activitybar.map((c: { id: string }) => c.id), ["botBottle"]);
    assert.ok(fs.existsSync(path.join(root, String(contributes.viewsContainers.activitybar[0].icon))));
    assert.deepEqual(contributes.views.botBottle.map((v: { id: string; name: string }) => [v.id, v.name]), [
      ["botBottle.bottles", "Bottles"],
      ["botBottle.egress", "Egress"],
    ]);
  });

  it("puts attach and stop inline on running bottles, stop on degraded ones, Allow / Approve / Deny on egress rows", () => {
    const inline = contributes.menus["view/item/context"].filter((entry: { group: string }) => entry.group.startsWith("inline"));
    assert.deepEqual(
      inline.map((entry: { command: string; when: string }) => [entry.command, entry.when]),
      [
        ["botBottle.attach", "view == botBottle.bottles && viewItem == bottle.running"],
        ["botBottle.stop", "view == botBottle.bottles && viewItem =~ /^bottle\\.(running|degraded)$/"],
        ["botBottle.allowHost", "view == botBottle.egress && viewItem == egress.allowable"],
        ["botBottle.approveAsk", "view == botBottle.egress && viewItem == egress.pending"],
        ["botBottle.denyAsk", "view == botBottle.egress && viewItem == egress.pending"],
      ],
    );
  });

  it("takes what it runs on this machine from user settings only, never from a workspace", () => {
    // A workspace's .vscode/settings.json comes with a pulled branch the agent wrote; VS Code
    // applies a "window" or "machine-overridable" setting from it (and the extension restarts
    // the server on the change), so `["sh", "-c", ...]` there would run on the host, and
    // keepWarm would build the branch's Dockerfile as soon as bottle.toml is opened. VS Code
    // drops workspace and folder values of a "machine" (or "application") setting.
    const properties = contributes.configuration.properties as Record<string, { scope?: string }>;
    for (const key of ["botBottle.server.command", "botBottle.server.python", "botBottle.pool.keepWarm"]) {
      assert.ok(["machine", "application"].includes(String(properties[key].scope)), `${key} has scope ${properties[key].scope}`);
    }
  });

  it("stays off in Restricted Mode: nothing of an untrusted workspace runs on this machine", () => {
    assert.equal(manifest.capabilities.untrustedWorkspaces.supported, false);
  });

  it("gives bottle.toml and *.bottle.toml a language of its own with a TOML grammar, and the server both", () => {
    assert.ok(manifest.activationEvents.includes("workspaceContains:**/bottle.toml"));
    assert.ok(manifest.activationEvents.includes("onLanguage:bottle-toml"));
    assert.deepEqual(contributes.languages.map((l: { id: string; filenames: string[]; filenamePatterns: string[] }) => [l.id, l.filenames, l.filenamePatterns]), [
      ["bottle-toml", ["bottle.toml"], ["*.bottle.toml"]],
    ]);
    const [grammar] = contributes.grammars;
    assert.equal(grammar.language, "bottle-toml");
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, String(grammar.path)), "utf8")).scopeName, grammar.scopeName);
    assert.ok(fs.existsSync(path.join(root, String(contributes.languages[0].configuration))));
    assert.equal(MANIFEST_GLOB, "**/bottle.toml");
    assert.deepEqual(MANIFEST_GLOBS, ["**/bottle.toml", "**/*.bottle.toml"]);
  });

  it("ships the bottle.toml JSON Schema to Even Better TOML through tomlValidation", () => {
    assert.deepEqual(contributes.tomlValidation, [{ fileMatch: "bottle.toml", url: "./schemas/bottle.schema.json" }]);
    const schema = JSON.parse(fs.readFileSync(path.join(root, "schemas", "bottle.schema.json"), "utf8"));
    assert.equal(typeof schema, "object");
    assert.ok(schema.$schema ?? schema.type ?? schema.properties, "looks like a JSON Schema");
  });

  it("has a schema identical to what `bottle-engine schema` prints (when the engine is installed)", (t) => {
    const engine = process.env.BOTTLE_ENGINE ?? findOnPath("bottle-engine");
    if (engine === undefined) {
      t.skip("bottle-engine is not installed");
      return;
    }
    let output: string;
    try {
      output = execFileSync(engine, ["schema"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (error) {
      if (/invalid choice: 'schema'/.test(String((error as { stderr?: string }).stderr))) {
        t.skip("this bottle-engine has no schema command yet");
        return;
      }
      throw error;
    }
    const committed = JSON.parse(fs.readFileSync(path.join(root, "schemas", "bottle.schema.json"), "utf8"));
    assert.deepEqual(committed, JSON.parse(output), "schemas/bottle.schema.json is stale: run `npm run schema`");
  });
});
