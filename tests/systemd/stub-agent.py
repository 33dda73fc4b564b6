#!/usr/bin/python3
"""A stand-in for `invigil run` that speaks only the sd_notify protocol the
agent will speak: READY=1, then WATCHDOG=1 every 2 s with a STATUS= line,
STOPPING=1 and exit 0 on SIGTERM. Used by nspawn-watchdog.sh
(INVIGIL_NSPAWN_AGENT=stub) to prove the unit and the test itself while the
real agent has no watchdog code."""
import os
import signal
import socket
import sys
import time


def notify(msg: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), addr)


def stop(_sig, _frame):
    notify("STOPPING=1")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
notify("READY=1\nSTATUS=stub agent: ready")
n = 0
while True:
    n += 1
    notify(f"WATCHDOG=1\nSTATUS=stub agent: ping {n}")
    time.sleep(2)
