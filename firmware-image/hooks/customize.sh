#!/bin/sh
# mmdebstrap --customize-hook: runs on the build host once every package is
# installed in "$1". Everything here is about packages (kernel, initramfs,
# firmware); piha's own files go in later, by firmware-image/build, without
# emulation.
set -eu
root=$1

# raspi-firmware writes config.txt and cmdline.txt from this file whenever
# the kernel or the initramfs changes, on the Pi too; so piha's settings
# live here and survive kernel updates.
cat >"$root/etc/default/raspi-firmware" <<'CONF'
# Written by piha's image build. raspi-firmware regenerates
# /boot/firmware/config.txt and cmdline.txt from this file on every kernel
# or initramfs update: change settings here, not there.
ROOTPART="LABEL=piha-root"
CONSOLES="tty0 ttyS1,115200"
CONF
# A headless cluster node: the GPU gets the least memory the firmware allows.
echo "gpu_mem=16" >"$root/etc/default/raspi-firmware-custom"

# Back to the real update-initramfs (see essential.sh), then run it once.
# MODULES=most (Debian's default) because the same initrd must find the SD
# card on a Pi 3, a Pi 4 and a Zero 2 W, and the virtio disk in the QEMU
# boot test; "dep" would look at the build host instead.
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
kernels=$(ls "$root/lib/modules")
[ "$(echo "$kernels" | wc -w)" -eq 1 ] || { echo "expected one kernel, found: $kernels" >&2; exit 1; }
mkdir -p "$root/boot/firmware"
# The initramfs post-update hook of raspi-firmware copies the kernel, the
# initrd and the device trees to /boot/firmware and writes config.txt.
chroot "$root" update-initramfs -c -k "$kernels"
test -s "$root/boot/firmware/cmdline.txt"
test -s "$root/boot/firmware/vmlinuz-$kernels"
test -s "$root/boot/firmware/initrd.img-$kernels"
