#!/bin/sh
# mmdebstrap --essential-hook: runs on the build host after the Essential
# packages are in "$1" and before everything else is installed.
set -eu
root=$1

# Under qemu-user one initramfs run takes minutes, and the kernel, udev,
# kmod, zstd and others each trigger one. Park update-initramfs until the
# customize hook, which runs it once (as pi-gen does in its export stage).
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
cat >"$root/usr/sbin/update-initramfs" <<'STUB'
#!/bin/sh
echo "update-initramfs: deferred to the end of the image build ($*)" >&2
STUB
chmod 0755 "$root/usr/sbin/update-initramfs"

# piha's db role makes its own PostgreSQL data directory; Debian's package
# would otherwise create and start a "main" cluster on port 5432 that every
# node would then carry, and that collides with piha's.
mkdir -p "$root/etc/postgresql-common"
echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
