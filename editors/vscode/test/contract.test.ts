import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as contract from "../src/contract";
import { TRUST_REVIEW } from "./support/fake-server";

describe("server answers", () => {
  it("reads the slug of a launched bottle", () => {
    assert.deepEqual(contract.parseLaunchResult({ slug: "dev-3f2a" }), { slug: "dev-3f2a" });
  });

  it("names the command and the expected shape when an answer is malformed", () => {
    assert.throws(() => contract.parseLaunchResult({}), (error: Error) => {
      assert.ok(error instanceof contract.ContractError);
      assert.match(error.message, /'bottle\.launch'/);
      assert.match(error.message, /\{slug: string\}/);
      assert.match(error.message, /pip install -U bot-bottle/);
      return true;
    });
  });

  it("accepts an attach argv and rejects an empty or non-string one", () => {
    assert.deepEqual(contract.parseTerminalCommand("bottle.attach", { command: ["bottle-engine", "attach", "x"] }), {
      command: ["bottle-engine", "attach", "x"],
    });
    assert.throws(() => contract.parseTerminalCommand("bottle.attach", { command: [] }), contract.ContractError);
    assert.throws(() => contract.parseTerminalCommand("bottle.logs", { command: ["ok", 3] }), /'bottle\.logs'/);
  });

  it("fills missing optional bottle fields with empty text", () => {
    assert.deepEqual(contract.parseBottleList([{ slug: "a", agent: "dev", backend: 7 }]), [
      { slug: "a", agent: "dev", backend: "", status: "", started_at: "", manifest: "", runtime: "", fix: "" },
    ]);
    assert.throws(() => contract.parseBottleList({ slug: "a" }), contract.ContractError);
    assert.throws(() => contract.parseBottleList([{ agent: "dev" }]), /at least a slug/);
  });

  it("reads the agents a manifest declares", () => {
    assert.deepEqual(contract.parseAgents([{ name: "dev", bottle: "default" }, { name: "ci" }]), [
      { name: "dev", bottle: "default" },
      { name: "ci", bottle: "" },
    ]);
    assert.throws(() => contract.parseAgents([{ bottle: "x" }]), contract.ContractError);
  });
});

describe("trust reviews", () => {
  it("reads the difference and the fingerprint that names the reviewed content", () => {
    // Read as the server sent it; only first_use is renamed.
    const { first_use, ...sameNames } = TRUST_REVIEW;
    assert.deepEqual(contract.parseTrustReview("bottle.trustReview", TRUST_REVIEW), { ...sameNames, firstUse: first_use });
  });

  it("refuses a review without a fingerprint or with malformed changes", () => {
    assert.throws(() => contract.parseTrustReview("bottle.trust", { ...TRUST_REVIEW, fingerprint: "" }), /'bottle\.trust'/);
    assert.throws(() => contract.parseTrustReview("bottle.trust", { ...TRUST_REVIEW, changes: [{ text: 1 }] }), contract.ContractError);
    assert.throws(() => contract.parseTrustReview("bottle.trust", { error: "changed after it was reviewed" }), contract.ServerReportedError);
  });
});

describe("command arguments", () => {
  it("takes the slug from a lens argument, a bottle from the view, or a bare string", () => {
    assert.equal(contract.slugFromArgument({ slug: "a" }), "a");
    assert.equal(contract.slugFromArgument({ slug: "b", agent: "dev", backend: "docker" }), "b");
    assert.equal(contract.slugFromArgument("c"), "c");
    assert.equal(contract.slugFromArgument(undefined), undefined);
    assert.equal(contract.slugFromArgument({ slug: "" }), undefined);
  });

  it("takes whatever part of {uri, agent} a lens gave", () => {
    assert.deepEqual(contract.launchArgsFromArgument({ uri: "file:///w/bottle.toml", agent: "dev" }), {
      uri: "file:///w/bottle.toml",
      agent: "dev",
    });
    assert.deepEqual(contract.launchArgsFromArgument({ uri: "file:///w/bottle.toml" }), { uri: "file:///w/bottle.toml" });
    assert.deepEqual(contract.launchArgsFromArgument(undefined), {});
  });
});
