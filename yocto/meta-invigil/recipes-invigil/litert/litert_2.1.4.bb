# nooelint: oelint.var.bbclassextend
# (a prebuilt library for the target only: no native variant)
SUMMARY = "LiteRT runtime library (libLiteRt.so) for the Invigil agent"
DESCRIPTION = "Google's LiteRT 2.1.4 C library, which runs the face model \
               through XNNPACK. Taken prebuilt from the ai-edge-litert 2.1.4 \
               wheel on PyPI (the library is the same whatever the wheel's \
               Python tag) and installed where the agent's model.backend = \
               auto looks for it; without it the agent runs on its built-in \
               TensorFlow Lite."
HOMEPAGE = "https://pypi.org/project/ai-edge-litert/"
BUGTRACKER = "https://github.com/invigil/invigil/issues"
SECTION = "libs"
LICENSE = "Apache-2.0"
# The wheel ships no license file; its metadata says Apache 2.0.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
CVE_PRODUCT = "litert"

# The boards are aarch64; the aarch64 library needs glibc 2.34 (scarthgap
# has 2.39). A wheel is a zip: saved as .zip so do_unpack unzips it into
# ${S}. The sha256 is the wheel's; scripts/fetch-litert checks the library
# inside it against its own pinned sha256
# (332b30e12a0708279c44e883639ac4caa435f18f6333fc4f35f8293a90ea9819).
SRC_URI = "https://files.pythonhosted.org/packages/b4/a3/dd09746925ce50d6a88ae9dfd1b1349f21568ee5587df25a7ce25d0fedc2/ai_edge_litert-${PV}-cp311-cp311-manylinux_2_27_aarch64.whl;downloadfilename=ai_edge_litert-${PV}-aarch64.zip;subdir=${BP}"
SRC_URI[sha256sum] = "f2f07d27211a6b64ed374733bcbdd78dcf0cdc70de5c5f7d0ce7f198d4890a23"

COMPATIBLE_HOST = "aarch64.*-linux"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# /usr/lib/invigil/libLiteRt.so: the path the agent looks in (models/src/litert/library.rs).
do_install() {
    install -d ${D}${nonarch_libdir}/invigil
    install -m 0755 ${S}/ai_edge_litert/libLiteRt.so ${D}${nonarch_libdir}/invigil/libLiteRt.so
}

FILES:${PN} += "${nonarch_libdir}/invigil/libLiteRt.so"
# Prebuilt and stripped upstream: nothing to strip or split off.
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
