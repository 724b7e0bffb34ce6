#!/usr/bin/env bash
# Entrypoint of the loyalty-node container image (see README "Docker").
#
# On every start:
#   1. First start only: `loyalty-node init` in the data directory. Its output goes to a
#      private file first, so a crash before step 2 loses nothing.
#   2. Records the admin API key in <data>/admin-key (mode 0600) and the node's public verifier
#      key in <data>/verifier-key, once.
#   3. Publishes the node's verifier key and URL in the federation directory, as
#      <brand>.vkey and <brand>.url (written to a temporary name, then renamed).
#   4. Waits, bounded, for every partner in DEPLOY_PARTNERS to publish its own, and pins each
#      partner not pinned yet by appending a [[partners]] table to <data>/config.toml.
#      A partner already pinned keeps its pinned key, whatever the directory says now.
#   5. exec loyalty-node run, which then owns the process (SIGTERM drains and closes).
# Every step is idempotent: a restart never runs init again and never pins a partner twice.
#
# The federation directory carries public keys only. It is a trust anchor only because it is
# a volume local to one compose project; production operators exchange verifier keys out of
# band and pin them in config.toml or with `loyalty partners add` (README "Federation").
#
# Environment read by this script (the node reads LOYALTY_* itself too; see node/src/config.rs):
#   LOYALTY_BRAND          required: this node's brand id
#   LOYALTY_LISTEN         address to listen on (default 0.0.0.0:7700)
#   LOYALTY_PUBLIC_URL     URL partners reach this node at (default http://<brand>:<port>)
#   DEPLOY_PARTNERS        partner brands, separated by spaces or commas (default: none)
#   DEPLOY_DATA            the node's data directory (default /data)
#   DEPLOY_FEDERATION      the shared directory of published keys (default /federation)
#   DEPLOY_PARTNER_WAIT_S  how long to wait for the partners' keys, in seconds (default 120)
set -euo pipefail

# Until `exec`, this shell may be PID 1 in a container, which ignores SIGTERM by default.
trap 'echo "entrypoint: stopped before the node started" >&2; exit 143' TERM INT

log() { echo "entrypoint: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

data=${DEPLOY_DATA:-/data}
federation=${DEPLOY_FEDERATION:-/federation}
wait_s=${DEPLOY_PARTNER_WAIT_S:-120}
brand=${LOYALTY_BRAND:-}
listen=${LOYALTY_LISTEN:-0.0.0.0:7700}
port=${listen##*:}
public_url=${LOYALTY_PUBLIC_URL:-http://${brand}:${port}}
partners=${DEPLOY_PARTNERS:-}
partners=${partners//,/ }

brand_re='^[a-z0-9][a-z0-9.-]*$'
url_re='^https?://[][A-Za-z0-9._~:@%-]+(/[A-Za-z0-9._~/-]*)?$'
# A C2SP verifier key: <name>+<8 hex digits>+<base64>; no quote or backslash can reach TOML.
vkey_re='^[A-Za-z0-9._/:-]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$'

[[ -n $brand ]] || die "LOYALTY_BRAND is not set"
[[ $brand =~ $brand_re ]] || die "LOYALTY_BRAND=$brand is not a brand id (lowercase letters, digits, '-', '.')"
[[ $port =~ ^[0-9]+$ ]] || die "LOYALTY_LISTEN=$listen has no port"
[[ $public_url =~ $url_re ]] || die "LOYALTY_PUBLIC_URL=$public_url is not an http(s) URL"
[[ $wait_s =~ ^[0-9]+$ ]] || die "DEPLOY_PARTNER_WAIT_S=$wait_s is not a number of seconds"
for p in $partners; do
  [[ $p =~ $brand_re ]] || die "DEPLOY_PARTNERS: $p is not a brand id"
  [[ $p != "$brand" ]] || die "DEPLOY_PARTNERS names this node's own brand $brand"
done

config=$data/config.toml
init_output=$data/.init-output

# The value of `<prefix>` on the line of init's output that starts with it.
from_init() {
  [[ -f $init_output ]] || return 1
  local line
  line=$(grep -m1 -F "$1" "$init_output") || return 1
  printf '%s\n' "${line#"$1"}"
}

# Writes a file through a temporary name, so a reader never sees half of it.
publish() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  printf '%s\n' "$2" >"$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$1"
}

mkdir -p "$data"

# 1. First start: init.
if [[ -f $config ]]; then
  configured=$(sed -n 's/^brand = "\(.*\)"$/\1/p' "$config" | head -n1)
  [[ $configured == "$brand" ]] || die "$data holds the node of brand '$configured', not '$brand' (LOYALTY_BRAND); use another volume or reset this one"
  log "$data already holds the node of $brand; not running init again"
else
  log "first start: loyalty-node init --data $data --brand $brand --listen $listen --public-url $public_url"
  (umask 077 && loyalty-node init --data "$data" --brand "$brand" --listen "$listen" --public-url "$public_url" >"$init_output")
fi

# 2. The admin API key (secret) and the verifier key (public), each recorded once.
if [[ ! -f $data/admin-key ]]; then
  admin_key=$(from_init "admin API key (shown once, stored hashed): ") ||
    die "no admin key recorded and init's output is gone: init did not finish; reset the volume, or stop the node and run loyalty-node keys create --data $data --name admin --scope admin"
  publish "$data/admin-key" "$admin_key" 600
  log "admin API key recorded in $data/admin-key (mode 0600)"
fi
if [[ ! -f $data/verifier-key ]]; then
  vkey=$(from_init "verifier key: ") || die "no verifier key recorded and init's output is gone: init did not finish; reset the volume"
  publish "$data/verifier-key" "$vkey" 644
fi
rm -f "$init_output"
vkey=$(<"$data/verifier-key")
[[ $vkey =~ $vkey_re ]] || die "$data/verifier-key does not hold a verifier key"
log "verifier key of $brand: $vkey"

# 3. Publish this node's public key and URL for the partners.
if [[ -d $federation && -w $federation ]]; then
  publish "$federation/$brand.url" "$public_url" 644
  publish "$federation/$brand.vkey" "$vkey" 644
  log "published $federation/$brand.vkey and $brand.url"
elif [[ -n $partners ]]; then
  die "cannot write to the federation directory $federation (DEPLOY_FEDERATION)"
fi

# 4. Wait for the partners' keys, then pin those not pinned yet.
deadline=$((SECONDS + wait_s))
for p in $partners; do
  if [[ ! -f $federation/$p.vkey || ! -f $federation/$p.url ]]; then
    log "waiting up to $((deadline - SECONDS)) s for partner $p to publish $federation/$p.vkey"
    while [[ ! -f $federation/$p.vkey || ! -f $federation/$p.url ]] && ((SECONDS < deadline)); do
      sleep 1
    done
  fi
  if [[ ! -f $federation/$p.vkey || ! -f $federation/$p.url ]]; then
    log "warning: partner $p published no key within ${wait_s} s; starting without pinning it (restart this node once $p is up)"
    continue
  fi
  p_vkey=$(<"$federation/$p.vkey")
  p_url=$(<"$federation/$p.url")
  [[ $p_vkey =~ $vkey_re ]] || die "$federation/$p.vkey does not hold a verifier key"
  [[ $p_url =~ $url_re ]] || die "$federation/$p.url does not hold an http(s) URL"
  if grep -qxF "brand = \"$p\"" "$config"; then
    if ! grep -qxF "verifier_key = \"$p_vkey\"" "$config"; then
      log "warning: partner $p now publishes another key ($p_vkey) than the one pinned in $config; keeping the pinned key (the node will refuse the new log)"
    fi
    continue
  fi
  table=$(printf '[[partners]]\nbrand = "%s"\nurl = "%s"\nverifier_key = "%s"' "$p" "$p_url" "$p_vkey")
  publish "$config" "$(<"$config")"$'\n\n'"$table" 600
  log "pinned partner $p at $p_url with key $p_vkey"
done

# 5. Serve.
trap - TERM INT
log "starting: loyalty-node run --data $data"
exec loyalty-node run --data "$data"
