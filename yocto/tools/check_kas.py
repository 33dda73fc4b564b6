#!/usr/bin/env python3
"""Check the kas configs offline with kas's own include handler and schema.

    check_kas.py REPO_DIR BOARD.yml...

For each board config: kas merges it with its includes and validates the
result against its schema (no repository is fetched); then the machine and
target must be set, the target must be a recipe of meta-invigil, every layer
of this repository must exist, every other repository must name a url and a
branch or commit, and a WKS_FILE set in local.conf must be in meta-invigil's
wic/. One line per config; exit 1 if any fails.
"""

import argparse
import glob
import os
import re
import sys

from kas.context import create_global_context
from kas.includehandler import IncludeHandler


def check(repo, path):
    ih = IncludeHandler([os.path.abspath(path)], use_lock=False)
    cfg, missing = ih.get_config()
    problems = []
    if missing:
        problems.append("includes from unknown repositories: %s" % missing)
    machine, target = cfg.get("machine"), cfg.get("target")
    if not machine:
        problems.append("no machine")
    layer = os.path.join(repo, "yocto", "meta-invigil")
    targets = target if isinstance(target, list) else [target]
    for t in targets:
        if not t or not glob.glob(os.path.join(layer, "recipes-*", "*", "%s*.bb" % t)):
            problems.append("target %s is not a recipe of meta-invigil" % t)
    for name, r in (cfg.get("repos") or {}).items():
        r = r or {}
        if "url" not in r and "path" not in r:  # this repository
            for lyr in (r.get("layers") or {"": None}):
                if not os.path.isfile(os.path.join(repo, lyr, "conf", "layer.conf")):
                    problems.append("repo %s: layer %s has no conf/layer.conf" % (name, lyr or "."))
        elif "url" in r and not (r.get("branch") or r.get("commit") or r.get("tag")):
            problems.append("repo %s: no branch, tag or commit" % name)
    conf = "\n".join((cfg.get("local_conf_header") or {}).values())
    for wks in re.findall(r'^\s*WKS_FILE\s*\??=\s*"([^"]+)"', conf, re.M):
        if not os.path.isfile(os.path.join(layer, "wic", wks)):
            problems.append("WKS_FILE %s is not in meta-invigil/wic" % wks)
    return machine, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("repo")
    ap.add_argument("configs", nargs="+")
    args = ap.parse_args()
    create_global_context(argparse.Namespace(no_color=True, update=False, force_checkout=False))
    failures = 0
    for path in args.configs:
        shown = os.path.relpath(path, args.repo)
        try:
            machine, problems = check(os.path.abspath(args.repo), path)
        except Exception as e:  # noqa: BLE001 - kas reports schema and YAML errors this way
            machine, problems = None, ["%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")]
        if problems:
            failures += 1
            print("FAIL %s: %s" % (shown, "; ".join(problems)))
        else:
            print("ok   %s (machine %s)" % (shown, machine))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
