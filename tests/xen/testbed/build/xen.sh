#!/usr/bin/env bash
# Stage "xen" of the test bed: two hypervisors.
#
#   xen.sh OUT VERSION MIRROR SECURITY_MIRROR JOBS
#
# OUT receives:
#   xen-stock     Debian's xen-hypervisor-4.17-amd64 VERSION, decompressed: QEMU's
#                 -kernel loader boots the ELF32 multiboot image, not xen.gz.
#   xen-rebuilt   the same hypervisor built from Debian's source with the options
#                 Debian leaves out (see below), and its config as xen-rebuilt.config.
#   source.txt    which source version was built.
# The source tree is deleted afterwards; build.log stays.
#
# The source comes from a private apt state under OUT: the host's sources list
# is neither read for deb-src nor changed.
set -euo pipefail

out=$1 version=$2 mirror=$3 security=$4 jobs=$5
cd "$out"

mkdir -p deb
(cd deb && apt-get -qq download "xen-hypervisor-4.17-amd64=$version")
dpkg-deb -x deb/xen-hypervisor-4.17-amd64_*.deb deb/x
zcat deb/x/boot/xen-4.17-amd64.gz >xen-stock
cp deb/x/boot/xen-4.17-amd64.config xen-stock.config

apt_dir=$out/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache"
cat >"$apt_dir/sources.list" <<EOF
deb-src $mirror bookworm main
deb-src $mirror bookworm-updates main
deb-src $security bookworm-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
apt-get -qq "${apt_opts[@]}" update

# Prefer the source of the stock binary, so the two hypervisors differ only in
# their options.  The security archive's mirror may list a source it does not
# serve (seen: 4.17.7 listed, 404 on download); then take the newest one that
# downloads.  Both are the same stable branch: the domctl/sysctl ABI the dom0
# tools use does not change within it.
mkdir -p src
built=
for v in "$version" $(apt-cache "${apt_opts[@]}" showsrc xen | awk '/^Version:/ { print $2 }' | sort -r -V); do
	if (cd src && apt-get -qq "${apt_opts[@]}" source --download-only "xen=$v" >/dev/null 2>&1); then
		built=$v
		break
	fi
	rm -f src/*
done
if [ -z "$built" ]; then
	echo "xen.sh: no xen source package could be downloaded from $mirror or $security" >&2
	exit 1
fi
echo "$built" >source.txt
# --no-check: apt-get source has already checked every file against the
# signed Sources index; dpkg-source would only add a warning that the .dsc's
# own signature cannot be verified without debian-keyring.
dpkg-source --no-check -x src/xen_*.dsc src/tree >/dev/null

# Debian's config plus what hmig's Xen backend tests need:
#   SHADOW_PAGING  log-dirty for PV guests (PV live migration);
#   MEM_PAGING     the vm_event paging ring that post-copy uses (UNSUPPORTED in 4.17).
cd src/tree/xen
cp "$out/xen-stock.config" .config
cat >>.config <<EOF
CONFIG_EXPERT=y
CONFIG_UNSUPPORTED=y
CONFIG_SHADOW_PAGING=y
CONFIG_MEM_PAGING=y
EOF
make -s olddefconfig >/dev/null 2>&1 # it warns about every option reassigned above
for opt in CONFIG_UNSUPPORTED CONFIG_SHADOW_PAGING CONFIG_MEM_PAGING; do
	if ! grep -q "^$opt=y" .config; then
		echo "xen.sh: $opt did not survive olddefconfig" >&2
		exit 1
	fi
done
make -j"$jobs" XEN_VENDORVERSION=-hmig >"$out/build.log" 2>&1 ||
	{ tail -n 30 "$out/build.log" >&2; exit 1; }
cp xen "$out/xen-rebuilt"
cp .config "$out/xen-rebuilt.config"
cd "$out"
rm -rf src deb apt
