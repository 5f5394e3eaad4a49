#!/usr/bin/env bash
# Runs inside the bottle as the agent.
echo "hello from bottle ${BOTTLE_SLUG} (agent ${BOTTLE_AGENT})"
echo "user: $(id -un) (uid $(id -u)); workspace: $(ls /workspace | tr '\n' ' ')"
echo "the only way out is the bundle's proxy: ${HTTPS_PROXY}"
printf 'a host not on the allowlist -> '
curl -s -o /dev/null -w 'HTTP %{http_code} from the bundle\n' http://denied.invalid/ || echo "refused"
bundle_ip=${HTTPS_PROXY#http://}; bundle_ip=${bundle_ip%%:*}
gateway=${bundle_ip%.*}.$(( ${bundle_ip##*.} - 1 ))
printf 'the bottle network gateway %s, skipping the proxy -> ' "$gateway"
if timeout 3 bash -c "exec 3<>/dev/tcp/$gateway/22" 2>/dev/null; then echo "OPEN (unexpected)"; else echo "unreachable (as designed)"; fi
printf 'the Docker socket -> '
[ -e /var/run/docker.sock ] && echo "present (unexpected)" || echo "absent"
