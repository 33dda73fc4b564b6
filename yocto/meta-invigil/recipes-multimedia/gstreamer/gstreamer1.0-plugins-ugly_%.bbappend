# x264enc: the H.264 encoder of boards without a usable hardware one
# (Raspberry Pi 5; Jetson Orin Nano, whose NVENC-less module falls back).
# x264 and -ugly carry LICENSE_FLAGS "commercial": a build that installs them
# must accept it (yocto/kas/common.yml does).
PACKAGECONFIG:append:raspberrypi5 = " x264"
PACKAGECONFIG:append:tegra = " x264"
