#!/bin/bash
# The dom0 half of smoke.sh, run through `xenbed sh`:
#
#   smoke-dom0.sh CFG MEMORY_MIB RESULTS_DIR LABEL [migrate [HMIGT_CHECK]]
#
# Creates hmigt from CFG with MEMORY_MIB, waits until its op counter advances,
# optionally `xl migrate`s it to this host (xl-migrate-time) and waits until
# the counter advances on the new domain, then checks that hmigt saw no
# violation, destroys it, and prints one "smoke ..." line (also written to
# RESULTS_DIR/smoke-LABEL.txt).  With HMIGT_CHECK (the hmigt-check binary),
# the whole of hmigt's memory is checked against the replay twice before and
# twice after the migration, each time at wherever the pause lands.
set -euo pipefail
cfg=$1 mem=$2 results=$3 label=$4 migrate=${5:-} checker=${6:-}

check_memory() {
	[ -n "$checker" ] || return 0
	"$checker" "$1"
	sleep 0.3
	"$checker" "$1"
}
mkdir -p "$results"

# hmigt's last progress line in Xen's console for domain $1: "ops viol"
progress() {
	xl dmesg | grep -a "^(d$1) .*hmigt ops=" | tail -n 1 |
		sed 's/.* ops=\([0-9]*\) .* viol=\([0-9]*\).*/\1 \2/'
}

# Wait up to $2 s for domain $1's counter to pass $3; prints the seconds taken.
wait_ops() {
	local dom=$1 limit=$2 min=$3 t0=$EPOCHREALTIME p
	while :; do
		p=$(progress "$dom")
		if [ -n "$p" ] && [ "${p% *}" -gt "$min" ]; then
			awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
			return 0
		fi
		if awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
			echo "smoke: domain $dom made no progress past $min ops in $limit s" >&2
			xl dmesg | grep -a "(d$dom)" | tail -n 5 >&2
			return 1
		fi
		sleep 0.5
	done
}

xl destroy hmigt 2>/dev/null || true
t0=$EPOCHREALTIME
xl create "$cfg" "memory=$mem" "maxmem=$mem" 'cmdline="seed=7 rate=2000 report=500 stall=100"' 2>&1 |
	grep -v 'tsc mode string'
create_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
id=$(xl domid hmigt)
first_s=$(wait_ops "$id" 120 0)
p=$(progress "$id")
wait_ops "$id" 60 "${p% *}" >/dev/null
line="smoke $label: create_s=$create_s first_progress_s=$first_s domid=$id ops=$(progress "$id" | cut -d' ' -f1)"

check_memory "$id"
if [ -n "$migrate" ]; then
	mig=$(xl-migrate-time hmigt "$results/xl-migrate-$label.json")
	echo "$mig"
	new=$(xl domid hmigt)
	[ "$new" != "$id" ] || { echo "smoke: hmigt kept domid $id: not migrated" >&2; exit 1; }
	p=$(progress "$new")
	wait_ops "$new" 60 "${p% *}" >/dev/null
	p=$(progress "$new")
	line="$line migrated_to=$new ops_after=${p% *} ${mig#xl-migrate }"
	id=$new
	check_memory "$id"
fi

viol=$(progress "$id" | cut -d' ' -f2)
if [ "$viol" != 0 ] || xl dmesg | grep -aq "hmigt VIOLATION\|hmigt HALT"; then
	echo "smoke: hmigt reported violations:" >&2
	xl dmesg | grep -a "hmigt VIOLATION\|hmigt HALT" >&2
	exit 1
fi
xl destroy hmigt
echo "$line viol=0" | tee "$results/smoke-$label.txt"
