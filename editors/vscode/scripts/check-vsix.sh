#!/usr/bin/env bash
# CI check for the VS Code extension: installs the locked dependencies, runs ESLint and the unit tests,
# packages the .vsix and verifies its contents, both as `vsce ls` reports them and inside
# the archive. Usage: editors/vscode/scripts/check-vsix.sh  (from anywhere; needs Node >= 20).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_NPM_CI:-}" != "1" ]; then
  npm ci --no-audit --no-fund
fi
npm run lint
npm test
npm run package

expected="dist/extension.js
language-configuration.json
LICENSE.txt
media/bottle.svg
package.json
README.md
schemas/bottle.schema.json
syntaxes/bottle-toml.tmLanguage.json"

actual="$(npx vsce ls --no-dependencies | sort)"
if [ "$actual" != "$(sort <<<"$expected")" ]; then
  echo "vsce ls lists unexpected files:" >&2
  diff <(sort <<<"$expected") <(echo "$actual") >&2 || true
  exit 1
fi

# The archive itself: the same files under extension/, and a manifest VS Code can read.
python3 - bot-bottle.vsix <<'PY'
import json, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"extension.vsixmanifest", "extension/package.json", "extension/dist/extension.js",
        "extension/schemas/bottle.schema.json", "extension/readme.md",
        "extension/syntaxes/bottle-toml.tmLanguage.json", "extension/language-configuration.json",
        "extension/media/bottle.svg"}
missing = need - names
if missing:
    sys.exit(f"bot-bottle.vsix lacks {sorted(missing)}")
stray = [n for n in names if "node_modules/" in n or n.startswith("extension/src/") or n.endswith(".map")]
if stray:
    sys.exit(f"bot-bottle.vsix ships files it should not: {sorted(stray)}")
package = json.loads(zipfile.ZipFile(sys.argv[1]).read("extension/package.json"))
json.loads(zipfile.ZipFile(sys.argv[1]).read("extension/schemas/bottle.schema.json"))
for grammar in package["contributes"]["grammars"]:
    json.loads(zipfile.ZipFile(sys.argv[1]).read("extension/" + grammar["path"].removeprefix("./")))
assert package["main"] == "./dist/extension.js", package["main"]
print(f"bot-bottle.vsix: {len(names)} entries, contents as expected")
PY
