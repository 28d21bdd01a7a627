#!/usr/bin/env bash
# smoke.sh [RESULTS_DIR]: prove the Xen test bed end to end.
#
# Builds the bed (cached), builds hmigt with the project's build if needed,
# then for the rebuilt and for Debian's stock hypervisor: boots, creates
# hmigt (PVH, $HMIGT_MEM MiB, default 128), sees its op counter advance,
# checks its memory against the replay (hmigt-check), `xl migrate`s it to
# localhost, sees the counter advance on the new domain with no violation,
# checks its memory again, and stops the bed.  Times go to RESULTS_DIR (default
# build/xen-smoke): summary.txt, one xl-migrate-*.json per hypervisor, the
# serial logs.  On a shared machine run it under the heavy-job lock:
#   flock /tmp/hmig-heavy.lock tests/xen/testbed/smoke.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
xenbed=$here/xenbed
results=$(realpath -m "${1:-$top/build/xen-smoke}")
mem=${HMIGT_MEM:-128}
cfg=$top/build/tests/xen/hmigt/hmigt.cfg
checker=$top/build/tests/xen/hmigt-check

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$results"
: >"$results/summary.txt"
say() { echo "$*" | tee -a "$results/summary.txt"; }

t=$(now)
"$xenbed" build
say "build_s=$(since "$t") (cached stages: $("$xenbed" paths | grep -v "^run" | awk '{ print $2 }' | tr '\n' ' '))"
if [ ! -f "$top/build/tests/xen/hmigt/hmigt.elf" ] || [ ! -x "$checker" ]; then
	"$top/tools/run" build
fi
if [ ! -x "$checker" ]; then
	echo "smoke.sh: $checker was not built (meson found no libxen-dev?)" >&2
	exit 1
fi
case $results in
"$top"/*) ;;
*) echo "smoke.sh: RESULTS_DIR must be inside $top (the tree dom0 sees)" >&2; exit 2 ;;
esac

trap '"$xenbed" stop >/dev/null 2>&1 || true' EXIT
for xen in rebuilt stock; do
	t=$(now)
	"$xenbed" boot --xen "$xen" --share "$top" --serial-log "$results/serial-$xen.log"
	say "boot $xen: boot_s=$(since "$t")"
	"$xenbed" sh --timeout 900 -- bash "$here/smoke-dom0.sh" "$cfg" "$mem" "$results" "$xen" migrate "$checker" |
		tee -a "$results/summary.txt"
	[ "${PIPESTATUS[0]}" -eq 0 ] || { say "smoke $xen: FAILED"; exit 1; }
	"$xenbed" stop
done
say "smoke: ok"
