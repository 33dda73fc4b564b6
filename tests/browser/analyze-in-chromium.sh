#!/usr/bin/env bash
# Headless Chromium with a fake camera fed from calm_desk.mp4 (a calm desk, made
# by scripts/fetch-assets; carphone's man talks and is flagged) runs an
# exam page that streams JPEG data URLs at 30 FPS to the agent's /analyze;
# replies must come back one per frame, in order, mostly scoring 50 or more.
# Installs Debian's chromium and npm's playwright-core if missing (install.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/env.sh
here=tests/browser
cache=$(tests/browser/install.sh)
tmp=$(mktemp -d)
cleanup() { kill "${agent:-}" "${web:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ffmpeg -v error -i assets/calm_desk.mp4 -vf setsar=1 -pix_fmt yuv420p "$tmp/cam.y4m"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
aport=$(port); wport=$(port)
cat > "$tmp/desk.toml" <<TOML
[model]
path = "$root/models/face_detection_short_range.tflite"
[spool]
path = "$tmp/spool.sqlite"
[clips]
dir = "$tmp/clips"
[server]
listen = "127.0.0.1:$aport"
TOML
"$INVIGIL_BIN" run --config "$tmp/desk.toml" >"$tmp/agent.log" 2>&1 & agent=$!
python3 -m http.server "$wport" --bind 127.0.0.1 --directory "$here" >/dev/null 2>&1 & web=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$aport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
cp "$here/drive.mjs" "$cache/drive.mjs"
node "$cache/drive.mjs" "http://127.0.0.1:$wport/page.html" "ws://127.0.0.1:$aport/analyze" "$tmp/cam.y4m" "${FRAMES:-150}" "http://127.0.0.1:$aport/"
