SUMMARY = "Invigil desk box image"
DESCRIPTION = "core-image-minimal with the Invigil agent enabled, its model \
               and default config, OpenSSH, time sync (systemd-timesyncd) \
               and the GStreamer elements of each board."
HOMEPAGE = "https://github.com/invigil/invigil"
BUGTRACKER = "https://github.com/invigil/invigil/issues"
SECTION = "image"
LICENSE = "MIT"
CVE_PRODUCT = "invigil"

# core-image-minimal's own settings (poky's core-image-minimal.bb), plus ours.
IMAGE_INSTALL = "\
    invigil \
    invigil-config \
    invigil-models \
    litert \
    packagegroup-core-boot \
    ${CORE_IMAGE_EXTRA_INSTALL} \
    ${INVIGIL_BOARD_PACKAGES} \
"
# No locales, as in core-image-minimal (the value is a single space).
# nooelint: oelint.vars.notneededspace
IMAGE_LINGUAS = " "

IMAGE_FEATURES += "ssh-server-openssh"

inherit core-image features_check

REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_ROOTFS_SIZE ?= "8192"
IMAGE_ROOTFS_EXTRA_SPACE:append = "${@bb.utils.contains("DISTRO_FEATURES", "systemd", " + 4096", "", d)}"

# Time: systemd-timesyncd is part of poky's systemd (PACKAGECONFIG timesyncd,
# on by default) and enabled by its preset. Scores are timestamped in UTC.

# The GStreamer elements each board needs beyond what the invigil package
# pulls in (v4l2src, v4l2h264enc, mp4mux, h264parse, decodebin, ...):
# - Raspberry Pi: libcamerasrc for CSI cameras (libcamera, meta-multimedia).
#   The Pi 4 encodes with its VideoCore block (v4l2h264enc, in -good).
# - Raspberry Pi 5 has no H.264 encoder block: x264enc from -ugly (GPL,
#   LICENSE_FLAGS "commercial": the kas config accepts it; this layer's
#   bbappend turns on the x264 PACKAGECONFIG).
# - Jetson (meta-tegra): nvarguscamerasrc (CSI), nvvidconv and nvv4l2h264enc
#   (Xavier NX/AGX, Orin NX/AGX); x264enc for an Orin Nano (no encoder).
INVIGIL_BOARD_PACKAGES ?= ""
INVIGIL_BOARD_PACKAGES:rpi = "libcamera-gst"
INVIGIL_BOARD_PACKAGES:raspberrypi5 = "gstreamer1.0-plugins-ugly-x264 libcamera-gst"
INVIGIL_BOARD_PACKAGES:tegra = "\
    gstreamer1.0-plugins-nvarguscamerasrc \
    gstreamer1.0-plugins-nvvidconv \
    gstreamer1.0-plugins-nvvideo4linux2 \
    gstreamer1.0-plugins-ugly-x264 \
"

# SSH access: the public key(s) in this file on the build machine become
# root's authorized_keys (poky's sshd allows root with a key, never with a
# password). Set it in local.conf or a kas override (docs/DEPLOY.md).
INVIGIL_SSH_AUTHORIZED_KEYS_FILE ??= ""

ROOTFS_POSTPROCESS_COMMAND += "invigil_authorized_keys"

invigil_authorized_keys() {
    keys="${INVIGIL_SSH_AUTHORIZED_KEYS_FILE}"
    if [ -z "$keys" ]; then
        bbwarn "INVIGIL_SSH_AUTHORIZED_KEYS_FILE is not set: nobody can ssh into this image"
        return
    fi
    [ -f "$keys" ] || bbfatal "INVIGIL_SSH_AUTHORIZED_KEYS_FILE $keys does not exist"
    install -d -m 0700 ${IMAGE_ROOTFS}${ROOT_HOME}/.ssh
    install -m 0600 "$keys" ${IMAGE_ROOTFS}${ROOT_HOME}/.ssh/authorized_keys
}
invigil_authorized_keys[doc] = "Install INVIGIL_SSH_AUTHORIZED_KEYS_FILE as root's authorized_keys"
invigil_authorized_keys[vardeps] += "INVIGIL_SSH_AUTHORIZED_KEYS_FILE"

# With read-only-rootfs (the Raspberry Pi kas configs turn it on), poky keeps
# OpenSSH host keys in /var/run/ssh, new at every boot. Keep them on the
# persistent /var/lib instead, so ssh does not warn of a changed host key.
ROOTFS_POSTPROCESS_COMMAND += "invigil_persistent_ssh_host_keys"

invigil_persistent_ssh_host_keys() {
    if ${@bb.utils.contains('IMAGE_FEATURES', 'read-only-rootfs', 'true', 'false', d)} &&
            [ -f ${IMAGE_ROOTFS}${sysconfdir}/ssh/sshd_config_readonly ]; then
        sed -i 's|${localstatedir}/run/ssh/|${localstatedir}/lib/ssh/|' ${IMAGE_ROOTFS}${sysconfdir}/ssh/sshd_config_readonly
        echo "SYSCONFDIR=${localstatedir}/lib/ssh" >> ${IMAGE_ROOTFS}${sysconfdir}/default/ssh
        install -d -m 0755 ${IMAGE_ROOTFS}${localstatedir}/lib/ssh
    fi
}
invigil_persistent_ssh_host_keys[doc] = "Keep OpenSSH host keys on /var/lib on a read-only root"
