#!/usr/bin/env bash
# Installs what the browser tests need, if missing: Debian's chromium, node
# and npm (apt), and npm's playwright-core under ~/.cache/invigil/node.
# Prints that folder (the browser tests run their .mjs from there, so
# `import "playwright-core"` resolves).
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/invigil/node"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "browser tests: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -d "$cache/node_modules/playwright-core" ]; then
  mkdir -p "$cache" && (cd "$cache" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
fi
echo "$cache"
