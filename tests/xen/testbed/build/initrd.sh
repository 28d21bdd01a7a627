#!/usr/bin/env bash
# Stage "initrd" of the test bed: dom0's initrd.
#
#   initrd.sh OUT ROOTFS_DIR DOM0_DIR
#
# A busybox initrd that loads the virtio and ext4 modules, mounts /dev/vda and
# hands over to the test bed's own init.  Debian's initramfs-tools initrd runs
# udev and costs about a minute more per boot under TCG.  The test bed's dom0
# scripts (DOM0_DIR) travel in the initrd and are copied into the root before
# switch_root, so changing them rebuilds this stage only (seconds), never the
# root file system.  OUT receives initrd.gz.
set -euo pipefail

out=$1 rootfs=$2 dom0=$3
tree=$out/tree
rm -rf "$tree"
mkdir -p "$tree"/{bin,proc,sys,dev,newroot,modules,xenbed}
cp "$rootfs/busybox" "$tree/bin/busybox"
cp "$rootfs"/modules/* "$tree/modules/"
cp "$dom0"/*.sh "$tree/xenbed/"

cat >"$tree/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do
	insmod "/modules/$m" 2>/dev/null  # crc32c-intel: no SSE4.2 on qemu64; crc32c_generic serves
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
if ! mount -t ext4 -o rw,noatime /dev/vda /newroot; then
	echo "xenbed initrd: cannot mount /dev/vda; dropping to a shell"
	exec sh
fi
mkdir -p /newroot/usr/local/lib/xenbed
for f in /xenbed/*.sh; do
	cp "$f" /newroot/usr/local/lib/xenbed/
	chmod 755 "/newroot/usr/local/lib/xenbed/${f##*/}"
done
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/local/lib/xenbed/init.sh
EOI
chmod 755 "$tree/init"
(cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.gz"
rm -rf "$tree"
