#!/usr/bin/env python3
"""Parse meta-invigil with bitbake's own parser (the `bb` library that the
PyPI package bitbake-setup carries), without poky: stand-ins for
bitbake.conf and the classes the recipes inherit are written to a temporary
folder. Used by scripts/check-yocto; run it with that venv's python:

    parse_layer.py LAYER_DIR [--repo REPO_DIR]

Each recipe is parsed for three machines' overrides (Raspberry Pi 4, Raspberry
Pi 5, Jetson Orin NX), every variable of the result is expanded (so a broken
${@...} fails here), and a few facts the real classes would only find at build
time are checked: every crate:// and https:// entry of SRC_URI has a sha256sum,
every file:// entry exists beside its recipe, the files a recipe installs from
${S} exist in the repository, the layer's BBFILES reach every recipe, and each
board gets its GStreamer packages. Prints one line per recipe; exit 1 if any
recipe fails.
"""

import argparse
import glob
import logging
import os
import re
import sys
import tempfile
import types

# bitbake-setup ships bb without hashserv, which bb.siggen imports; the noop
# signature generator used here never calls it.
_hs = types.ModuleType("hashserv")
_hs.__path__ = []
_hs.client = types.ModuleType("hashserv.client")
sys.modules.setdefault("hashserv", _hs)
sys.modules.setdefault("hashserv.client", _hs.client)

import bb  # noqa: E402
import bb.codeparser  # noqa: E402
import bb.data  # noqa: E402
import bb.fetch2  # noqa: E402
import bb.parse  # noqa: E402
import bb.siggen  # noqa: E402
import bb.utils  # noqa: E402

logger = logging.getLogger("BitBake")

MACHINES = {
    # MACHINE: MACHINEOVERRIDES as meta-raspberrypi and meta-tegra set them
    "raspberrypi4-64": "aarch64:armv8a:rpi:raspberrypi4-64",
    "raspberrypi5": "aarch64:armv8a:rpi:raspberrypi5",
    "p3768-0000-p3767-0000": "aarch64:armv8a:tegra:tegra234:p3768-0000-p3767-0000",
}

# What each board's image must carry (from the image's INVIGIL_BOARD_PACKAGES).
BOARD_PACKAGES = {
    "raspberrypi4-64": ({"libcamera-gst"}, {"gstreamer1.0-plugins-ugly-x264"}),
    "raspberrypi5": ({"libcamera-gst", "gstreamer1.0-plugins-ugly-x264"}, set()),
    "p3768-0000-p3767-0000": ({"gstreamer1.0-plugins-nvvideo4linux2",
                               "gstreamer1.0-plugins-nvarguscamerasrc"}, set()),
}

BITBAKE_CONF = r"""
# Stand-in for poky's bitbake.conf: the variables meta-invigil's recipes use.
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[0] or 'defaultpkgname'}"
PV = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[1] or '1.0'}"
PR = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[2] or 'r0'}"
BPN = "${PN}"
BP = "${BPN}-${PV}"
P = "${PN}-${PV}"
PF = "${PN}-${PV}-${PR}"
TOPDIR = "/build"
TMPDIR = "${TOPDIR}/tmp"
WORKDIR = "${TMPDIR}/work/${PF}"
S = "${WORKDIR}/${BP}"
B = "${S}"
D = "${WORKDIR}/image"
T = "${WORKDIR}/temp"
THISDIR = "${@os.path.dirname(d.getVar('FILE'))}"
FILE_DIRNAME = "${@os.path.dirname(d.getVar('FILE'))}"
FILESPATH = "${FILE_DIRNAME}/${BP}:${FILE_DIRNAME}/${BPN}:${FILE_DIRNAME}/files"
COMMON_LICENSE_DIR = "/poky/meta/files/common-licenses"
prefix = "/usr"
exec_prefix = "/usr"
bindir = "/usr/bin"
sbindir = "/usr/sbin"
libdir = "/usr/lib"
libexecdir = "/usr/libexec"
datadir = "/usr/share"
sysconfdir = "/etc"
localstatedir = "/var"
sharedstatedir = "/com"
base_libdir = "/lib"
nonarch_libdir = "/usr/lib"
nonarch_base_libdir = "/lib"
systemd_unitdir = "/lib/systemd"
systemd_system_unitdir = "/lib/systemd/system"
TARGET_ARCH = "aarch64"
TARGET_OS = "linux"
TARGET_VENDOR = "-poky"
TARGET_SYS = "${TARGET_ARCH}${TARGET_VENDOR}-${TARGET_OS}"
TARGET_PREFIX = "${TARGET_SYS}-"
TUNE_CCARGS = "-mcpu=cortex-a72"
STAGING_DIR_TARGET = "${WORKDIR}/recipe-sysroot"
STAGING_DIR_NATIVE = "${WORKDIR}/recipe-sysroot-native"
STAGING_LIBDIR_NATIVE = "${STAGING_DIR_NATIVE}/usr/lib"
DEBUG_PREFIX_MAP = "-ffile-prefix-map=${WORKDIR}=/usr/src/debug/${PN}/${PV}"
DISTRO = "poky"
DISTRO_FEATURES = "acl ipv4 ipv6 systemd usrmerge"
CLASSOVERRIDE = "class-target"
OVERRIDES = "${TARGET_OS}:${TARGET_ARCH}:pn-${PN}:${MACHINEOVERRIDES}:${DISTRO}:${CLASSOVERRIDE}:forcevariable"
FILESOVERRIDES = "${TARGET_ARCH}:${MACHINEOVERRIDES}:${DISTRO}"
PACKAGES = "${PN}-dbg ${PN}-dev ${PN}-doc ${PN}"
FILES:${PN} = "${bindir}/* ${sysconfdir} ${datadir}/${BPN}"
DEPENDS = ""
RDEPENDS:${PN} = ""
CORE_IMAGE_EXTRA_INSTALL ?= ""
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
ROOT_HOME = "/home/root"
INVIGIL_REPO_DIR ?= "/nonexistent"
"""

CLASSES = {
    "base": r"""
# Stand-in for base.bbclass: the task graph only.
addtask fetch
addtask unpack after do_fetch
addtask patch after do_unpack
addtask configure after do_patch
addtask compile after do_configure
addtask install after do_compile
addtask package after do_install
addtask build after do_package
do_build[noexec] = "1"
""",
    "cargo_common": r"""
export CARGO_HOME = "${WORKDIR}/cargo_home"
RUST_HOST_SYS = "aarch64-poky-linux-gnu"
""",
    "cargo": r"""
# Stand-in for poky's cargo.bbclass: its variables, not its build.
inherit cargo_common
DEPENDS:append = " rust-native cargo-native"
B = "${WORKDIR}/build"
BUILD_MODE = "--release"
CARGO_SRC_DIR ??= ""
CARGO_MANIFEST_PATH ??= "${S}/${CARGO_SRC_DIR}/Cargo.toml"
CARGO_BUILD_FLAGS = "-v --frozen --target ${RUST_HOST_SYS} ${BUILD_MODE} --manifest-path=${CARGO_MANIFEST_PATH}"
CARGO_TARGET_SUBDIR = "${RUST_HOST_SYS}/release"
cargo_do_compile() {
    cargo build ${CARGO_BUILD_FLAGS}
}
do_compile() {
    cargo_do_compile
}
""",
    "cargo-update-recipe-crates": r"""
addtask do_update_crates after do_patch
do_update_crates[nostamp] = "1"
CARGO_LOCK_SRC_DIR ??= "${S}"
do_update_crates() {
    :
}
""",
    "systemd": r"""
SYSTEMD_PACKAGES ??= "${PN}"
SYSTEMD_AUTO_ENABLE ??= "enable"
python __anonymous() {
    for pkg in (d.getVar("SYSTEMD_PACKAGES") or "").split():
        if not d.getVar("SYSTEMD_SERVICE:" + pkg):
            bb.fatal("systemd: SYSTEMD_SERVICE:%s is not set" % pkg)
}
""",
    "useradd": r"""
python __anonymous() {
    for pkg in (d.getVar("USERADD_PACKAGES") or "").split():
        if not (d.getVar("USERADD_PARAM:" + pkg) or d.getVar("GROUPADD_PARAM:" + pkg)
                or d.getVar("GROUPMEMS_PARAM:" + pkg)):
            bb.fatal("useradd: %s is in USERADD_PACKAGES but has no USERADD_PARAM/GROUPADD_PARAM" % pkg)
}
""",
    "allarch": r"""
PACKAGE_ARCH = "all"
""",
    "features_check": r"""
python __anonymous() {
    missing = [f for f in (d.getVar("REQUIRED_DISTRO_FEATURES") or "").split()
               if f not in (d.getVar("DISTRO_FEATURES") or "").split()]
    if missing:
        raise bb.parse.SkipRecipe("missing required distro feature(s) %s" % missing)
}
""",
    "core-image": r"""
# Stand-in for core-image.bbclass + image.bbclass: the feature list they accept.
IMAGE_FEATURES ?= ""
ROOTFS_POSTPROCESS_COMMAND ?= ""
addtask rootfs after do_install
addtask image_complete after do_rootfs before do_build
INVIGIL_KNOWN_IMAGE_FEATURES = "allow-empty-password allow-root-login dbg-pkgs debug-tweaks \
    dev-pkgs doc-pkgs empty-root-password hwcodecs lic-pkgs overlayfs-etc package-management \
    post-install-logging ptest-pkgs read-only-rootfs read-only-rootfs-delayed-postinsts \
    splash ssh-server-dropbear ssh-server-openssh stateless-rootfs staticdev-pkgs \
    tools-debug tools-profile tools-sdk tools-testapps x11 x11-base x11-sato weston"
python __anonymous() {
    known = d.getVar("INVIGIL_KNOWN_IMAGE_FEATURES").split()
    for f in (d.getVar("IMAGE_FEATURES") or "").split():
        if f not in known:
            bb.fatal("'%s' in IMAGE_FEATURES is not a valid image feature" % f)
}
""",
}

# A stand-in of the recipe meta-invigil's bbappend extends.
UGLY_RECIPE = r"""
SUMMARY = "stand-in"
LICENSE = "GPL-2.0-or-later"
PACKAGECONFIG ??= "orc"
"""


def write_standins(tmp):
    os.makedirs(os.path.join(tmp, "conf"))
    os.makedirs(os.path.join(tmp, "classes"))
    with open(os.path.join(tmp, "conf", "bitbake.conf"), "w") as f:
        f.write(BITBAKE_CONF)
    for name, text in CLASSES.items():
        with open(os.path.join(tmp, "classes", name + ".bbclass"), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(tmp, "recipes", "gstreamer"))
    ugly = os.path.join(tmp, "recipes", "gstreamer", "gstreamer1.0-plugins-ugly_1.22.12.bb")
    with open(ugly, "w") as f:
        f.write(UGLY_RECIPE)
    return ugly


def base_config(tmp, layer, machine):
    """The configuration datastore: bitbake.conf, the layer's layer.conf, base."""
    d = bb.data.init()
    d.setVar("BBPATH", tmp)
    d.setVar("MACHINE", machine)
    d.setVar("MACHINEOVERRIDES", MACHINES[machine])
    bb.parse.handle(os.path.join(tmp, "conf", "bitbake.conf"), d, True)
    d.setVar("LAYERDIR", layer)
    d.setVar("LAYERDIR_RE", re.escape(layer))
    bb.parse.handle(os.path.join(layer, "conf", "layer.conf"), d, True)
    # As bitbake's cookerdata does after each layer.conf.
    d.expandVarref("LAYERDIR")
    d.expandVarref("LAYERDIR_RE")
    d.delVar("LAYERDIR")
    d.delVar("LAYERDIR_RE")
    d.setVar("__bbclasstype", "recipe")
    bb.parse.BBHandler.inherit("base", "configuration", 0, d)
    bb.parse.siggen = bb.siggen.init(d)
    return d


def parse_recipe(cfg, path, appends=()):
    d = bb.data.createCopy(cfg)
    if appends:
        d.setVar("__BBAPPEND", " ".join(appends))
    datastores = bb.parse.handle(path, d, 0)
    rd = datastores[""]
    skipped = rd.getVar("__SKIPPED", False)
    if skipped:
        raise RuntimeError("recipe skipped: %s" % skipped)
    # Expand every variable: a bad ${@...} raises here. Shell functions go
    # through bitbake's shell parser, as the signature generator of a real
    # build does while parsing (a broken if/fi fails here).
    for key in rd.keys():
        if key.startswith("__"):
            continue
        value = rd.getVar(key)
        if rd.getVarFlag(key, "func", False) and not rd.getVarFlag(key, "python", False) and value:
            bb.codeparser.ShellParser(key, logger).parse_shell(value)
    return rd


def check_src_uri(rd, recipe_path):
    problems = []
    for url in (rd.getVar("SRC_URI") or "").split():
        scheme, host, path, _, _, params = bb.fetch2.decodeurl(url)
        if scheme in ("crate", "https", "http"):
            name = params.get("name", "default")
            key = "sha256sum" if name == "default" else name + ".sha256sum"
            if not rd.getVarFlag("SRC_URI", key):
                problems.append("%s has no SRC_URI[%s]" % (url, key))
        elif scheme == "file":
            found = False
            for p in (rd.getVar("FILESPATH") or "").split(":"):
                if p and os.path.exists(os.path.join(p, path.lstrip("/") if not host else host + path)):
                    found = True
                    break
            if not found:
                problems.append("%s not found in FILESPATH" % url)
        elif scheme == "git":
            if "branch" not in params and params.get("nobranch") != "1":
                problems.append("%s has no branch= (bitbake requires one)" % url)
    return problems


def check_installs_from_repo(rd, repo):
    """Files a recipe that builds the repository installs from ${S}."""
    problems = []
    s = rd.getVar("S")
    body = rd.getVar("do_install") or ""
    for m in re.finditer(re.escape(s) + r"/([^\s;]+)", body):
        rel = m.group(1)
        if not os.path.exists(os.path.join(repo, rel)):
            problems.append("do_install uses ${S}/%s, missing from the repository" % rel)
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layer")
    ap.add_argument("--repo", help="the repository the git recipe builds (checks files it installs from ${S})")
    args = ap.parse_args()
    layer = os.path.abspath(args.layer)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="invigil-bb-") as tmp:
        ugly = write_standins(tmp)
        try:
            cfgs = {m: base_config(tmp, layer, m) for m in MACHINES}
        except Exception as e:  # noqa: BLE001 - report any parse failure as one line
            print("FAIL conf/layer.conf: %s" % str(e).strip().splitlines()[-1])
            return 1
        cfg0 = next(iter(cfgs.values()))
        compat = (cfg0.getVar("LAYERSERIES_COMPAT_invigil") or "").split()
        patterns = (cfg0.getVar("BBFILES") or "").split()
        recipes = sorted(glob.glob(os.path.join(layer, "recipes-*", "*", "*.bb")))
        appends = sorted(glob.glob(os.path.join(layer, "recipes-*", "*", "*.bbappend")))
        reached = {f for p in patterns for f in glob.glob(p)}
        layer_problems = []
        if "scarthgap" not in compat:
            layer_problems.append("LAYERSERIES_COMPAT_invigil lacks scarthgap")
        for f in recipes + appends:
            if f not in reached:
                layer_problems.append("%s is not matched by BBFILES" % os.path.relpath(f, layer))
        if args.repo and cfg0.getVar("INVIGIL_REPO_DIR") != os.path.abspath(args.repo):
            layer_problems.append("INVIGIL_REPO_DIR is %s, not the repository" % cfg0.getVar("INVIGIL_REPO_DIR"))
        print("%s conf/layer.conf%s" % ("FAIL" if layer_problems else "ok  ",
                                         ": " + "; ".join(layer_problems) if layer_problems else ""))
        failures += bool(layer_problems)

        targets = [(r, ()) for r in recipes]
        for a in appends:
            if os.path.basename(a).startswith("gstreamer1.0-plugins-ugly_"):
                targets.append((ugly, (a,)))
            else:
                print("FAIL %s: no stand-in recipe to append to" % os.path.relpath(a, layer))
                failures += 1
        for recipe, apps in targets:
            shown = os.path.relpath(apps[0] if apps else recipe, layer)
            problems, notes = [], []
            for machine, cfg in cfgs.items():
                try:
                    rd = parse_recipe(cfg, recipe, apps)
                except Exception as e:  # noqa: BLE001
                    msg = str(e).strip().splitlines()
                    problems.append("%s: %s: %s" % (machine, type(e).__name__, msg[-1] if msg else ""))
                    break
                if apps:
                    pc = (rd.getVar("PACKAGECONFIG") or "").split()
                    want = machine != "raspberrypi4-64"
                    if ("x264" in pc) != want:
                        problems.append("%s: PACKAGECONFIG %s x264" % (machine, "lacks" if want else "has"))
                    continue
                problems += ["%s: %s" % (machine, p) for p in check_src_uri(rd, recipe)]
                if args.repo and (rd.getVar("SRC_URI") or "").startswith("git://"):
                    problems += check_installs_from_repo(rd, args.repo)
                if rd.getVar("PN") == "invigil-image":
                    pkgs = set((rd.getVar("IMAGE_INSTALL") or "").split())
                    need, avoid = BOARD_PACKAGES[machine]
                    if not need <= pkgs:
                        problems.append("%s: IMAGE_INSTALL lacks %s" % (machine, " ".join(sorted(need - pkgs))))
                    if avoid & pkgs:
                        problems.append("%s: IMAGE_INSTALL has %s" % (machine, " ".join(sorted(avoid & pkgs))))
                if machine == "raspberrypi4-64":
                    n = len([u for u in (rd.getVar("SRC_URI") or "").split() if u.startswith("crate://")])
                    if n:
                        notes.append("%d crates" % n)
            problems = list(dict.fromkeys(problems))
            if problems:
                failures += 1
                print("FAIL %s: %s" % (shown, "; ".join(problems)))
            else:
                print("ok   %s (%s%s)" % (shown, ", ".join(MACHINES), "; " + ", ".join(notes) if notes else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
