# nooelint: oelint.var.bbclassextend
# (configuration of the target only: no native variant)
SUMMARY = "Default configuration of the Invigil agent"
DESCRIPTION = "/etc/invigil/config.toml for a desk box (a USB camera at \
               /dev/video0, the model from invigil-models, spool and clips \
               under /var/lib/invigil), kept on the writable /var/lib so \
               that a read-only root works; and a udev rule giving the gpio \
               group the GPIO chips."
HOMEPAGE = "https://github.com/invigil/invigil"
BUGTRACKER = "https://github.com/invigil/invigil/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
CVE_PRODUCT = "invigil"

SRC_URI = "\
    file://90-invigil-gpio.rules \
    file://config.toml \
    file://invigil-tmpfiles.conf \
"

S = "${WORKDIR}"

inherit allarch

# /etc/invigil/<file> -> /var/lib/invigil-etc/<file>. systemd-tmpfiles puts
# the default config there at first boot; the secrets are written there by
# the operator (0600 root) and reach the agent, a DynamicUser, only as
# credentials (LoadCredential= in invigil.service; missing = not configured).
INVIGIL_ETC_FILES = "config.toml sync.token server.token s3.credentials"

do_configure[noexec] = "1"

do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/invigil
    install -m 0644 ${S}/config.toml ${D}${datadir}/invigil/config.toml
    install -d -m 0755 ${D}${sysconfdir}/invigil
    for f in ${INVIGIL_ETC_FILES}; do
        ln -s ${localstatedir}/lib/invigil-etc/$f ${D}${sysconfdir}/invigil/$f
    done
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/invigil-tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/invigil.conf
    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${S}/90-invigil-gpio.rules ${D}${nonarch_base_libdir}/udev/rules.d/
}

FILES:${PN} += "\
    ${datadir}/invigil/config.toml \
    ${nonarch_base_libdir}/udev/rules.d/90-invigil-gpio.rules \
    ${nonarch_libdir}/tmpfiles.d/invigil.conf \
    ${sysconfdir}/invigil \
"
