#!/usr/bin/env bash
# Builds the C addon with node-gyp against the headers of the node that runs
# it, offline: node-gyp would otherwise try to download headers (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(dirname "$(dirname "$(command -v node)")")
for dir in "${npm_config_nodedir:-}" "$prefix" /usr /usr/local; do
  if [ -n "$dir" ] && [ -f "$dir/include/node/node_api.h" ]; then nodedir=$dir; break; fi
done
if [ -z "${nodedir:-}" ]; then
  echo "build-native: no Node headers (include/node/node_api.h) found; install them (Debian: apt-get install libnode-dev or nodejs with headers)" >&2
  exit 1
fi
exec npx --no-install node-gyp rebuild --nodedir="$nodedir"
