# nooelint: oelint.var.bbclassextend
# (a target agent: no native variant)
SUMMARY = "Invigil exam-desk camera agent"
DESCRIPTION = "Scores every camera frame on the device with a face model (a \
               focus score for a human proctor, never a verdict), keeps the \
               scores in a durable local SQLite spool and records a short \
               H.264 clip when the score drops."
HOMEPAGE = "https://github.com/invigil/invigil"
BUGTRACKER = "https://github.com/invigil/invigil/issues"
SECTION = "multimedia"
# The workspace declares Apache-2.0 in Cargo.toml and ships no license file.
LICENSE = "Apache-2.0"
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
CVE_PRODUCT = "invigil"

# gstreamer-sys through pkg-config; clang-native (meta-clang) gives bindgen
# the libclang the tflite crate needs; TensorFlow Lite itself is vendored by
# the tflite crate and built with make. libjpeg-turbo (for /analyze) is
# vendored by the turbojpeg-sys crate and built with cmake (NEON on
# aarch64; nasm for the x86-64 SIMD code).
DEPENDS += "\
    clang-native \
    cmake-native \
    glib-2.0 \
    gstreamer1.0 \
    gstreamer1.0-plugins-base \
    make-native \
"
DEPENDS:append:x86-64 = " nasm-native"

# Where the source comes from. The defaults are placeholders for the
# project's public repository, release branch and release commit; the kas
# configs in yocto/kas/ build this very checkout instead
# (INVIGIL_GIT_URI = "git://${INVIGIL_REPO_DIR};protocol=file", the tip of
# branch main; INVIGIL_REPO_DIR is set by this layer's layer.conf). For a
# release, set SRCREV to the tagged commit: invigil-crates.inc must come from
# that commit's Cargo.lock (scripts/gen-crates-inc; scripts/check-yocto
# checks it against the checkout).
INVIGIL_GIT_URI ??= "git://github.com/invigil/invigil.git;protocol=https"
INVIGIL_GIT_BRANCH ??= "main"
PV = "0.1.0+git"
SRC_URI = "${INVIGIL_GIT_URI};branch=${INVIGIL_GIT_BRANCH}"
SRCREV ??= "0000000000000000000000000000000000000000"

require ${BPN}-crates.inc

S = "${WORKDIR}/git"

inherit cargo cargo-update-recipe-crates systemd useradd

# The workspace needs Rust >= 1.92 (edition 2024): scarthgap's own Rust is
# 1.75, so the kas configs add meta-lts-mixins (branch scarthgap/rust).

# Only the agent (the `invigil` binary), not the test crates.
CARGO_BUILD_FLAGS:append = " -p agent"

# The repository's .cargo/config.toml sets -mavx2 -mfma for TensorFlow Lite
# (x86-64 only) through [env] without force: the environment wins.
# TARGET_TOOLCHAIN_PREFIX makes the tflite build script call make with
# TARGET_TOOLCHAIN_PREFIX=<cross prefix> instead of passing CC and CFLAGS
# (which cargo_common exports, and which would replace TensorFlow Lite's own
# -O3 --std=c++11 -fPIC). Sysroot and tune flags go in through
# EXTRA_CXXFLAGS: the TensorFlow Lite Makefile derives CFLAGS from CXXFLAGS.
export TARGET_TOOLCHAIN_PREFIX = "${TARGET_PREFIX}"
export TFLITE_RS_MAKE_EXTRA_CXXFLAGS = "${TUNE_CCARGS} --sysroot=${STAGING_DIR_TARGET} ${DEBUG_PREFIX_MAP}"
export TFLITE_RS_MAKE_EXTRA_CFLAGS = "${TUNE_CCARGS} --sysroot=${STAGING_DIR_TARGET} ${DEBUG_PREFIX_MAP}"
# bindgen: libclang from clang-native, parsing the target's headers.
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET} --target=${TARGET_SYS}"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/invigil ${D}${bindir}/invigil
    # The repository's hardened unit: DynamicUser, state in /var/lib/invigil,
    # secrets through LoadCredential= from /etc/invigil.
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/invigil.service ${D}${systemd_system_unitdir}/invigil.service
}

# The unit asks for the supplementary groups video and gpio; poky's
# base-passwd has video, not gpio.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio"

SYSTEMD_SERVICE:${PN} = "invigil.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# The elements every pipeline uses; board specific sources and encoders
# (libcamerasrc, nvarguscamerasrc, nvv4l2h264enc, x264enc) come from the
# image. ca-certificates: the HTTPS uploads verify against the system roots.
RDEPENDS:${PN} += "\
    ca-certificates \
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-playback \
    gstreamer1.0-plugins-base-typefindfunctions \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-base-videorate \
    gstreamer1.0-plugins-base-videotestsrc \
    gstreamer1.0-plugins-good-isomp4 \
    gstreamer1.0-plugins-good-matroska \
    gstreamer1.0-plugins-good-video4linux2 \
    invigil-models \
"
# LiteRT (/usr/lib/invigil/libLiteRt.so): model.backend = "auto" uses it
# when present and TensorFlow Lite (built in) otherwise.
RRECOMMENDS:${PN} += "invigil-config"
RRECOMMENDS:${PN}:append:aarch64 = " litert"
