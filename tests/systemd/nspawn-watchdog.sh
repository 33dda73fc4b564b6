#!/usr/bin/env bash
# Boots a real systemd (Debian 12, systemd 252) in systemd-nspawn with
# systemd/invigil.service and the built agent, then checks, in order:
#   1. sandbox probe: the unit's sandbox (DynamicUser, SupplementaryGroups +
#      PrivateUsers, credentials, ProtectSystem, MemoryDenyWriteExecute with
#      GStreamer's orc) with a shell probe in place of the agent;
#   2. the agent starts under the unit (READY=1 if it speaks sd_notify) and
#      scores a real video into the spool;
#   3. watchdog: WATCHDOG=1 pings arrive; the agent is stalled (SIGSTOP) and
#      systemd restarts it;
#   4. `systemctl stop` ends it cleanly within TimeoutStopSec.
# Steps 2-3 need the agent's sd_notify code: without "READY=1" in the binary,
# step 2 runs under a Type=simple drop-in and step 3 is reported as SKIPPED.
# INVIGIL_NSPAWN_AGENT=stub runs tests/systemd/stub-agent.py (READY=1 and
# WATCHDOG=1 only, no frames) in place of the agent, to prove steps 3-4.
# INVIGIL_NSPAWN_DROPIN=FILE.conf adds a drop-in to the unit, to try a
# variant (e.g. "[Service]\nSystemCallErrorNumber=kill").
#
# Needs root, systemd-container and debootstrap (installed if missing) and the
# network the first time: the container root (~600 MB) is cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/invigil/nspawn-root. Takes ~3 min cold,
# ~1.5 min warm. Not part of scripts/test.
#
#   tests/systemd/nspawn-watchdog.sh            # INVIGIL_NSPAWN_REBUILD=1 to rebuild the root
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. scripts/env.sh

[ "$(id -u)" = 0 ] || { echo "nspawn-watchdog: needs root (systemd-nspawn, debootstrap)" >&2; exit 1; }
[ -x "$INVIGIL_BIN" ] || { echo "nspawn-watchdog: $INVIGIL_BIN is missing: build it first (cargo build --release -p agent)" >&2; exit 1; }
MODEL=models/face_detection_short_range.tflite
VIDEO=assets/carphone_pristine.mp4
for f in "$MODEL" "$VIDEO"; do
  [ -f "$f" ] || { echo "nspawn-watchdog: $f is missing: run scripts/fetch-assets" >&2; exit 1; }
done

if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container debootstrap >/dev/null
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/invigil"
croot="$cache/nspawn-root"
RUNTIME_PACKAGES=(
  libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools sqlite3 python3-minimal
)
agent_bin=$INVIGIL_BIN mode=agent
if [ "${INVIGIL_NSPAWN_AGENT:-}" = stub ]; then agent_bin=$root/tests/systemd/stub-agent.py mode=stub; fi
# The root is rebuilt when asked or when the package list changes.
if [ -n "${INVIGIL_NSPAWN_REBUILD:-}" ] || [ "$(cat "$croot/.invigil-ready" 2>/dev/null)" != "${RUNTIME_PACKAGES[*]}" ]; then
  echo "== building the container root in $croot (once)"
  rm -rf "$croot" "$croot.tmp"
  mkdir -p "$cache"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$croot.tmp" http://deb.debian.org/debian >"$cache/nspawn-debootstrap.log" 2>&1 \
    || { tail -20 "$cache/nspawn-debootstrap.log"; exit 1; }
  { chroot "$croot.tmp" apt-get update -qq &&
    chroot "$croot.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${RUNTIME_PACKAGES[@]}" &&
    chroot "$croot.tmp" apt-get clean; } >>"$cache/nspawn-debootstrap.log" 2>&1 \
    || { tail -20 "$cache/nspawn-debootstrap.log"; exit 1; }
  # What the SD image / package must provide: a gpio group (Raspberry Pi OS has one).
  chroot "$croot.tmp" sh -c 'getent group gpio >/dev/null || groupadd -r gpio'
  echo nspawn-test >"$croot.tmp/etc/hostname"
  echo "${RUNTIME_PACKAGES[*]}" >"$croot.tmp/.invigil-ready"
  mv "$croot.tmp" "$croot"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out" "$work/lib" "$work/etc"
chmod 0755 "$work/etc" "$work/lib"
echo "$mode" >"$work/lib/mode"
mkdir -p "$work/lib/dropins"
[ -z "${INVIGIL_NSPAWN_DROPIN:-}" ] || cp "$INVIGIL_NSPAWN_DROPIN" "$work/lib/dropins/test.conf"

cat >"$work/etc/config.toml" <<'EOF'
device_id = "nspawn-test"
[camera]
source = "file:/usr/share/invigil/test.mp4"
[model]
path = "/usr/share/invigil/models/face_detection_short_range.tflite"
[spool]
path = "/var/lib/invigil/spool.sqlite"
[clips]
dir = "/var/lib/invigil/clips"
[session]
always_on = true
EOF
printf 'secret-sync-token\n' >"$work/etc/sync.token"
chmod 0600 "$work/etc/sync.token"
# server.token and s3.credentials are left missing on purpose.

cat >"$work/lib/invigil-test.target" <<'EOF'
[Unit]
Description=Invigil nspawn test
Requires=basic.target invigil-test.service
After=basic.target
AllowIsolate=yes
EOF
cat >"$work/lib/invigil-test.service" <<'EOF'
[Unit]
Description=Invigil nspawn test driver
After=basic.target
[Service]
Type=simple
ExecStart=/usr/local/lib/invigil-test/driver.sh
StandardOutput=journal+console
StandardError=journal+console
EOF

# The probe runs inside the unit's sandbox in place of the agent.
cat >"$work/lib/probe.sh" <<'EOF'
#!/bin/sh
ok() { echo "probe ok: $*"; }
bad() { echo "probe FAIL: $*"; fail=1; }
fail=0
echo "probe: id: $(id)"
echo "probe: CREDENTIALS_DIRECTORY=$CREDENTIALS_DIRECTORY STATE_DIRECTORY=$STATE_DIRECTORY"
[ "$(cat "$CREDENTIALS_DIRECTORY/sync-token")" = secret-sync-token ] && ok "sync-token credential readable" || bad "sync-token credential"
[ "$(od -An -c "$CREDENTIALS_DIRECTORY/server-token" | tr -d ' ')" = '\n' ] && ok "missing server.token gives the fallback credential (one newline)" || bad "server-token fallback"
cat /etc/invigil/sync.token >/dev/null 2>&1 && bad "the token file itself is readable" || ok "/etc/invigil/sync.token itself is not readable"
cat /srv/video-group-file >/dev/null 2>&1 && ok "a root:video 0640 file is readable (SupplementaryGroups with PrivateUsers)" || bad "root:video 0640 file not readable"
cat /srv/gpio-group-file >/dev/null 2>&1 && ok "a root:gpio 0640 file is readable" || bad "root:gpio 0640 file not readable"
cat /srv/root-only-file >/dev/null 2>&1 && bad "a root-only file is readable" || ok "a root:root 0640 file is not readable"
touch /var/lib/invigil/probe 2>/dev/null && ok "/var/lib/invigil writable" || bad "/var/lib/invigil not writable"
touch /var/cache/invigil/probe 2>/dev/null && ok "/var/cache/invigil writable" || bad "/var/cache/invigil not writable"
touch /etc/invigil/probe 2>/dev/null && bad "/etc/invigil writable" || ok "/etc/invigil read-only"
[ "$(stat -c %a /var/lib/invigil/probe)" = 600 ] && ok "UMask 0077 (new file 0600)" || bad "new file mode $(stat -c %a /var/lib/invigil/probe)"
P="videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=640,height=480 ! videoconvert ! video/x-raw,format=RGB ! videoscale ! video/x-raw,width=320,height=240 ! fakesink"
for code in jit backup; do
  if [ $code = jit ]; then o=$(env -u ORC_CODE ORC_DEBUG=4 gst-launch-1.0 -q $P 2>&1); else o=$(ORC_CODE=backup ORC_DEBUG=4 gst-launch-1.0 -q $P 2>&1); fi
  rc=$?
  n_ok=$(printf '%s\n' "$o" | grep -c 'finished compiling (success)')
  n_err=$(printf '%s\n' "$o" | grep -ci 'ORC: ERROR\|failed to create')
  echo "probe: MemoryDenyWriteExecute + orc $code: gst-launch rc=$rc, orc programs compiled=$n_ok, orc errors=$n_err"
  [ $rc = 0 ] || bad "gst-launch under the sandbox (orc $code)"
done
echo "probe: GST_REGISTRY=$GST_REGISTRY ($(stat -c %s "$GST_REGISTRY" 2>/dev/null || echo missing) bytes)"
exit $fail
EOF

cat >"$work/lib/driver.sh" <<'EOF'
#!/bin/bash
out=/invigil-test-out
exec > >(tee -a $out/log) 2>&1
say() { echo "[driver] $*"; }
prop() { systemctl show -P "$1" invigil.service; }
result=PASS
fail() { say "FAIL: $*"; result=FAIL; }
finish() {
  journalctl -b --no-pager -o short-monotonic -u invigil.service -u invigil-probe.service >$out/journal.txt 2>&1
  echo "$result" >$out/result; say "result: $result"; sync; systemctl poweroff --no-block; exit 0
}

# Stand-ins for device nodes: group-owned files (no cameras in a container).
install -m 0640 -g video /dev/null /srv/video-group-file
install -m 0640 -g gpio /dev/null /srv/gpio-group-file
install -m 0640 /dev/null /srv/root-only-file
rm -rf /var/lib/private/invigil /var/cache/private/invigil
rm -rf /run/systemd/system/invigil.service.d
if [ -e /usr/local/lib/invigil-test/dropins/test.conf ]; then
  mkdir -p /run/systemd/system/invigil.service.d
  cp /usr/local/lib/invigil-test/dropins/test.conf /run/systemd/system/invigil.service.d/test.conf
  say "drop-in: $(tr '\n' ' ' </usr/local/lib/invigil-test/dropins/test.conf)"
  systemctl daemon-reload
fi

say "== 1. sandbox probe (the unit's sandbox, a shell in place of the agent)"
sed -e 's#^ExecStart=.*#ExecStart=/usr/local/lib/invigil-test/probe.sh#' -e 's/^Type=notify/Type=oneshot/' \
    -e '/^WatchdogSec=/d' -e '/^Restart=/d' -e '/^RestartSec=/d' /etc/systemd/system/invigil.service >/run/systemd/system/invigil-probe.service
systemctl daemon-reload
systemctl start invigil-probe.service || fail "probe unit: $(systemctl show -P Result invigil-probe.service)"
journalctl -b --no-pager -o cat -u invigil-probe.service | grep '^probe'

say "== 2. the agent under the unit"
if grep -qa 'READY=1' /usr/bin/invigil; then notify=1; else
  notify=0
  say "the agent binary has no sd_notify code (no READY=1): Type=simple drop-in, watchdog test SKIPPED"
  mkdir -p /run/systemd/system/invigil.service.d
  printf '[Service]\nType=simple\nWatchdogSec=0\n' >/run/systemd/system/invigil.service.d/no-notify.conf
  systemctl daemon-reload
fi
t0=$(date +%s)
if ! timeout 100 systemctl start invigil.service; then
  fail "start: Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus)"; finish
fi
say "started (active) after $(( $(date +%s) - t0 )) s; StatusText=$(prop StatusText)"
sleep 8
[ "$(prop ActiveState)" = active ] || fail "not active after 8 s: $(prop ActiveState)/$(prop SubState) Result=$(prop Result)"
if [ "$(cat /usr/local/lib/invigil-test/mode)" = agent ]; then
  rows=$(sqlite3 /var/lib/private/invigil/spool.sqlite 'select count(*) from scores' 2>&1)
  say "spool rows after 8 s: $rows"
  [ "${rows:-0}" -gt 0 ] 2>/dev/null || fail "no scores in the spool"
else
  say "stub agent: no spool check"
fi

if [ $notify = 1 ]; then
  say "== 3. watchdog"
  # The agent pings at half WatchdogSec (every 15 s with 30 s): wait up to 20 s.
  w1=$(prop WatchdogTimestampMonotonic); w2=$w1
  for _ in $(seq 20); do
    sleep 1; w2=$(prop WatchdogTimestampMonotonic)
    [ "$w2" != "$w1" ] && break
  done
  [ "$w2" != "$w1" ] && [ "$w2" != 0 ] && say "WATCHDOG=1 pings arrive ($w1 -> $w2)" || fail "no WATCHDOG=1 pings in 20 s ($w1 -> $w2)"
  pid=$(prop MainPID); n0=$(prop NRestarts)
  say "stalling the agent: kill -STOP $pid (WatchdogSec=$(prop WatchdogUSec))"
  kill -STOP "$pid"; t0=$(date +%s)
  restarted=0
  for _ in $(seq 120); do
    sleep 1
    if [ "$(prop NRestarts)" -gt "$n0" ] && [ "$(prop MainPID)" != "$pid" ] && [ "$(prop ActiveState)" = active ]; then restarted=1; break; fi
  done
  if [ $restarted = 1 ]; then
    say "restarted by the watchdog after $(( $(date +%s) - t0 )) s: NRestarts=$(prop NRestarts) MainPID=$(prop MainPID)"
    journalctl -b --no-pager -o cat -u invigil.service | grep -i 'watchdog' | head -3 | sed 's/^/[driver]   journal: /'
  else
    fail "no watchdog restart within 120 s: $(prop ActiveState)/$(prop SubState) NRestarts=$(prop NRestarts)"
  fi
  sleep 3
else
  say "== 3. watchdog: SKIPPED (no sd_notify in the agent yet)"
fi

say "agent log lines with WARN/ERROR/CRITICAL/HOME: $(journalctl -b --no-pager -o cat -u invigil.service | grep -cE 'WARN|ERROR|CRITICAL|getpw|HOME')"
journalctl -b --no-pager -o cat -u invigil.service | grep -E 'WARN|ERROR|CRITICAL|getpw|HOME' | head -5 | sed 's/^/[driver]   /'
say "== 4. stop"
t0=$(date +%s)
systemctl stop invigil.service
say "stopped in $(( $(date +%s) - t0 )) s; Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus)"
[ "$(prop Result)" = success ] || fail "stop was not clean: Result=$(prop Result)"
finish
EOF
chmod +x "$work/lib/probe.sh" "$work/lib/driver.sh"

echo "== booting systemd in $croot (agent: $agent_bin)"
rc=0
timeout 420 systemd-nspawn --quiet --register=no --keep-unit --console=pipe -D "$croot" \
  --bind-ro="$agent_bin:/usr/bin/invigil" \
  --bind-ro="$root/$MODEL:/usr/share/invigil/models/face_detection_short_range.tflite" \
  --bind-ro="$root/$VIDEO:/usr/share/invigil/test.mp4" \
  --bind-ro="$root/systemd/invigil.service:/etc/systemd/system/invigil.service" \
  --bind-ro="$work/etc:/etc/invigil" \
  --bind-ro="$work/lib:/usr/local/lib/invigil-test" \
  --bind-ro="$work/lib/invigil-test.target:/etc/systemd/system/invigil-test.target" \
  --bind-ro="$work/lib/invigil-test.service:/etc/systemd/system/invigil-test.service" \
  --bind="$work/out:/invigil-test-out" \
  -b -- systemd.unit=invigil-test.target >"$work/console.txt" 2>&1 || rc=$?
grep '\[driver\]\|^probe' "$work/out/log" 2>/dev/null || { echo "no driver log; console:"; tail -40 "$work/console.txt"; }
if [ "$(cat "$work/out/result" 2>/dev/null)" = PASS ]; then
  echo "nspawn-watchdog: PASS"
else
  echo "nspawn-watchdog: FAIL (nspawn rc=$rc); the agent's journal:"
  tail -40 "$work/out/journal.txt" 2>/dev/null
  exit 1
fi
