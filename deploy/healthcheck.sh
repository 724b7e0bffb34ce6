#!/usr/bin/env bash
# Container healthcheck of loyalty-node (see README "Docker"): exits 0 when GET <path> (default
# /readyz) on the node's own port answers 200, and 1 otherwise. It needs nothing but bash
# (/dev/tcp), so the runtime image carries no HTTP client.
#
# Environment: LOYALTY_LISTEN, the address the node listens on (default 0.0.0.0:7700); a
# wildcard address is probed on loopback.
set -euo pipefail

path=${1:-/readyz}
listen=${LOYALTY_LISTEN:-0.0.0.0:7700}
port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
  0.0.0.0 | "") host=127.0.0.1 ;;
  ::) host=::1 ;;
  *) ;;
esac

# The whole probe is bounded: connect, send, read the status line.
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
IFS= read -r -t 5 status <&3 || exit 1
exec 3<&-
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
  *)
    echo "healthcheck: GET $path answered: ${status%$'\r'}" >&2
    exit 1
    ;;
esac
