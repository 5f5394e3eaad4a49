# Sourced by scripts/test and scripts/demo: the defaults for a machine without a registry.
export BOTTLE_BASE_IMAGE="${BOTTLE_BASE_IMAGE:-bot-bottle/base:bookworm}"
# Builds here go through a TLS-inspecting proxy: trust the host's CA bundle inside builds.
if [ -z "${BOTTLE_CA_BUNDLE:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export BOTTLE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
