#!/usr/bin/env bash
# Builds the C addon (build/Release/aludel.node) and the LD_PRELOAD library
# (build/Release/aludel-preload.so) with node-gyp against the headers of the node
# that runs it, offline: node-gyp would otherwise try to download headers (no network).
# Runs from a checkout (`npm ci`, `npm run build:native`) and as the package's
# install script (`npm install -g ./aludel-*.tgz`), where devDependencies, and so
# the local node-gyp, are absent: then it uses the node-gyp bundled with npm.
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
if [ -x node_modules/.bin/node-gyp ]; then
  gyp=(node_modules/.bin/node-gyp)                # the project's devDependency
elif [ -n "${npm_config_node_gyp:-}" ] && [ -f "$npm_config_node_gyp" ]; then
  gyp=(node "$npm_config_node_gyp")               # npm's bundled node-gyp (set for lifecycle scripts)
elif command -v node-gyp >/dev/null; then
  gyp=(node-gyp)                                  # npm's node-gyp shim on PATH, or a global install
else
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  if [ -f "$npm_dir/node_modules/node-gyp/bin/node-gyp.js" ]; then
    gyp=(node "$npm_dir/node_modules/node-gyp/bin/node-gyp.js")
  else
    echo "build-native: node-gyp not found (npm install, or npm install -g node-gyp)" >&2
    exit 1
  fi
fi
exec "${gyp[@]}" rebuild --nodedir="$nodedir"
