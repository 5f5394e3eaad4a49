// Writes schemas/bottle.schema.json from `bottle-engine schema`, the single source of truth
// for the manifest's keys. The generated file is committed, so the extension also builds
// where Python is not installed: with --if-available a missing bottle-engine only warns.
import { execFileSync } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "schemas", "bottle.schema.json");
const ifAvailable = process.argv.includes("--if-available");
const command = process.env.BOTTLE_ENGINE ?? "bottle-engine";

let text;
try {
  text = execFileSync(command, ["schema"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
} catch (error) {
  if (ifAvailable && error.code === "ENOENT") {
    console.warn(`${command} is not installed; keeping the committed ${target}.`);
    process.exit(0);
  }
  console.error(`'${command} schema' failed: ${error.message}`);
  console.error("Install the engine (pip install -e . at the repository root) or set BOTTLE_ENGINE.");
  process.exit(1);
}

// Re-serialised so the committed file's formatting does not depend on the engine's.
const schema = JSON.parse(text);
const temporary = `${target}.tmp-${process.pid}`;
writeFileSync(temporary, `${JSON.stringify(schema, null, 2)}\n`);
renameSync(temporary, target);
console.log(`wrote ${target}`);
