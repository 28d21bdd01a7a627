#!/bin/bash
# PID 1 of the test bed's dom0 (no systemd: it would add minutes under TCG).
#
# Mounts what the Xen tools need, the control share (/mnt/xenbed) and the host
# directories xenbed was asked to share, starts xenstored and xenconsoled,
# starts the command runner, then writes /mnt/xenbed/ready: the host waits for
# that file, not for a line on the serial console.  After that it keeps a root
# shell on the Xen console (hvc0) for debugging by hand.
export HOME=/root TERM=dumb
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
hostname -F /etc/hostname
ip link set lo up

for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd 9pnet_virtio 9p loop; do
	modprobe "$m"
done
mount -t xenfs xenfs /proc/xen

# msize: 9p moves at most this much per request; the default (8 KiB) makes
# reading a binary from a share needlessly slow.
ninep=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /mnt/xenbed
if ! mount -t 9p -o "$ninep" xenbed /mnt/xenbed; then
	echo "xenbed: cannot mount the control share; the runner will not start"
fi
# One line per host directory: "TAG PATH MODE", mounted at the same path as on
# the host, so host-built binaries and paths in configs work unchanged.
# cache=mmap: executables on a share need mmap; everything else stays uncached
# so files the host rewrites are seen at once.
if [ -f /mnt/xenbed/shares ]; then
	while read -r tag path mode; do
		mkdir -p "$path"
		mount -t 9p -o "$ninep,cache=mmap,$mode" "$tag" "$path" ||
			echo "xenbed: cannot mount share $tag at $path"
	done </mnt/xenbed/shares
fi

mkdir -p /run/xen /run/xenstored /var/log/xen/console /var/lib/xen
/usr/lib/xen-4.17/bin/xenstored --pid-file=/run/xenstored.pid
/usr/lib/xen-4.17/bin/xen-init-dom0
/usr/lib/xen-4.17/bin/xenconsoled --log=guest --log-dir=/var/log/xen/console \
	--pid-file=/run/xenconsoled.pid

ln -sf /usr/local/lib/xenbed/xl-migrate-time.sh /usr/local/bin/xl-migrate-time
setsid /usr/local/lib/xenbed/runner.sh </dev/null >/dev/null 2>&1 &
echo "uptime $(cut -d' ' -f1 /proc/uptime)" >/mnt/xenbed/ready.tmp
mv /mnt/xenbed/ready.tmp /mnt/xenbed/ready
echo "xenbed: dom0 ready"

while true; do
	setsid -c /bin/bash -i </dev/hvc0 >/dev/hvc0 2>&1
done
