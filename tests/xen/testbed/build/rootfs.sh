#!/usr/bin/env bash
# Stage "rootfs" of the Xen test bed: dom0's root file system as an ext4 image.
#
#   rootfs.sh OUT MIRROR SECURITY_MIRROR
#
# OUT receives: dom0.img (ext4, sparse), vmlinuz, modules/ (the .ko files the
# initrd loads, in load order, listed in modules/order), busybox (static),
# manifest.txt (installed package versions) and debootstrap.log.  The unpacked tree is deleted
# afterwards: only the image is booted, and keeping both doubles the cache.
#
# Called by xenbed, which picks OUT from a hash of this file and of the
# candidate versions of the packages below; run it by hand only to debug.
set -euo pipefail

out=$1 mirror=$2 security=$3
root=$out/tree

# What dom0 needs: the Xen tools (they bring libxenctrl, libxenforeignmemory,
# libxenevtchn ...), a kernel, and the runtime libraries of hmig binaries built
# on the host against bookworm (liburing2, libjansson4, libgnutls30; Criterion
# so host-built test programs run too).  busybox-static is not for dom0: its
# binary becomes the initrd's only program.  No qemu-system-xen: the test bed
# runs PV and PVH guests only, which need no device model.
packages=(
	xen-utils-4.17 xenstore-utils linux-image-amd64 kmod udev
	busybox-static iproute2 procps util-linux bash coreutils
	liburing2 libjansson4 libgnutls30 libcriterion3 strace
)

# Modules the initrd loads to reach /dev/vda; dom0's init loads the rest.
initrd_modules=(virtio_pci virtio_blk crc32c_generic ext4)

# Its per-package progress goes to a log; errors still reach stderr.
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$out/debootstrap.log"

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
# No daemon may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

# A private mount namespace: /proc in the chroot disappears with this process,
# even when it is killed.  INITRD=No makes the kernel's postinst hook skip
# update-initramfs (about a minute here; the test bed boots its own initrd).
unshare --mount --propagation private bash -euo pipefail -c '
	root=$1; shift
	mount -t proc proc "$root/proc"
	chroot "$root" apt-get -qq update
	DEBIAN_FRONTEND=noninteractive INITRD=No chroot "$root" \
		apt-get -qq install -y --no-install-recommends "$@" >/dev/null
	chroot "$root" apt-get clean
	chroot "$root" dpkg-query -W -f="\${Package} \${Version}\n" >"$root/../manifest.txt"
' rootfs "$root" "${packages[@]}"
rm -f "$root/usr/sbin/policy-rc.d"
if ls "$root"/boot/initrd.img-* >/dev/null 2>&1; then
	echo "rootfs.sh: an initramfs was generated although INITRD=No" >&2
	exit 1
fi

kver=$(ls "$root/lib/modules" | head -n 1)
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/bin/busybox" "$out/busybox"
mkdir -p "$out/modules"
: >"$out/modules/order"
for m in "${initrd_modules[@]}"; do
	chroot "$root" /sbin/modprobe -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
	cp "$root$ko" "$out/modules/"
	basename "$ko" >>"$out/modules/order"
done

echo xendom0 >"$root/etc/hostname"
echo '/dev/vda / ext4 rw,noatime 0 1' >"$root/etc/fstab"
mkdir -p "$root/mnt/xenbed"

# Room for logs and for what tests put in dom0; the image is sparse and booted
# through a throw-away snapshot, so the size costs nothing until written.
used_mib=$(du -sm "$root" | cut -f1)
mkfs.ext4 -q -F -L dom0 -d "$root" "$out/dom0.img" "$((used_mib + 1024))M"
rm -rf "$root"
