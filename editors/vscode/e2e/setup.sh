#!/usr/bin/env bash
# Installs what the end-to-end test needs, from Debian's and the npm registry only:
# Chromium, the headers code-server's native modules build against, and (in e2e/node_modules)
# code-server 4.100.3 (VS Code 1.100, the last release that runs on Node 20) and playwright-core.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v chromium >/dev/null || need+=(chromium)
for package in build-essential pkg-config libkrb5-dev libxkbfile-dev libsecret-1-dev; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ -x node_modules/.bin/code-server ] && [ -d node_modules/playwright-core ]; then
  echo "code-server and playwright-core are installed"
  exit 0
fi

# code-server's VS Code pins @vscode/ripgrep 1.15.11, whose install script downloads rg from
# GitHub. The same binary ships in the npm package @vscode/ripgrep-linux-x64; put it where
# that script looks for a cached download, so nothing is fetched from outside the registry.
tmp="${TMPDIR:-/tmp}"
cache="$tmp/vscode-ripgrep-cache-1.15.11/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -f "$cache" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent @vscode/ripgrep-linux-x64@1.18.0 >/dev/null && tar xzf vscode-ripgrep-linux-x64-1.18.0.tgz)
  mkdir -p "$(dirname "$cache")"
  tar czf "$cache.tmp" -C "$work/package/bin" rg
  mv "$cache.tmp" "$cache"
fi

# code-server's install script refuses root without unsafe-perm, and runs `npx node-gyp`,
# which needs npx's consent in non-interactive runs. Takes about 4 minutes on 2 cores.
npm_config_unsafe_perm=true npm_config_yes=true npm ci --no-audit --no-fund
