#!/usr/bin/env bash
# End-to-end test of the packaged extension in code-server + Chromium (see e2e/extension.e2e.mjs).
#   editors/vscode/scripts/e2e.sh                                   editor features (~1 min)
#   BOT_BOTTLE_VSCODE_E2E_LAUNCH=1 editors/vscode/scripts/e2e.sh    also a whole launch on Docker
# Needs bottle-lsp / bottle-engine on PATH (pip install -e . at the repository root); for the
# launch also Docker and BOTTLE_BASE_IMAGE (default bot-bottle/base:bookworm).
# Screenshots and code-server logs land in e2e/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run package
e2e/setup.sh
BOT_BOTTLE_VSCODE_E2E=1 node --test e2e/extension.e2e.mjs
