#!/bin/bash
# xl-migrate-time DOMAIN [JSON]: `xl migrate` DOMAIN to this same host (dom0),
# timed, as the baseline hmig's Xen backend is compared with.
#
# Runs `xl -vvv migrate -s "" DOMAIN "<receiver>"`: with an empty ssh command,
# xl runs the receiver through sh -c and speaks the migration protocol over
# its stdin/stdout, so no ssh and no network are involved.  The receiver is
# `dd | xl migrate-receive`: dd counts the stream's bytes, which xl does not
# print.  Every line of both xl processes is stamped with the time it arrived
# ($EPOCHREALTIME: no fork per line).
#
# Prints one line of key=value and, if JSON is given, writes the same there:
#   total_s       xl migrate's wall time, start to exit
#   downtime_s    from libxl's "suspended" to the target's "Domain started":
#                 the guest runs on neither side in between (pause to unpause
#                 is slightly shorter: it excludes xl's messages around it)
#   bytes         the migration stream's size
#   console_gap_s for hmigt (or any guest printing to port 0xe9): the gap in
#                 Xen's console timestamps between the source's last line and
#                 the destination's first, so its resolution is hmigt's report=
#   guest_stall_ms hmigt's own "stall" line on the destination: the jump of its
#                 TSC, i.e. the part of the downtime the TSC saw (the saved TSC
#                 resumes where it was read, so this is not the whole downtime)
#   xl log in /var/log/xen/xl-migrate-time.log
#
# A PVH guest must acknowledge libxl's suspend request through xenstore; for
# one that cannot (hmigt), pvh-suspend-agent answers for it.  It runs for
# every PVH domain unless XL_MIGRATE_AGENT=off (a Linux PVH guest acks itself).
set -u
dom=${1:?usage: xl-migrate-time DOMAIN [JSON]}
json=${2:-}
log=/var/log/xen/xl-migrate-time.log

if [[ $dom =~ ^[0-9]+$ ]]; then
	name=$(xl domname "$dom") || exit 1
else
	name=$dom
fi
old_id=$(xl domid "$name") || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

stamp() {
	local line
	while IFS= read -r line; do
		printf '%s %s\n' "$EPOCHREALTIME" "$line"
	done
}

agent=
if [ "${XL_MIGRATE_AGENT:-auto}" != off ] && xl list -l "$name" | grep -q '"type": "pvh"'; then
	/usr/local/lib/xenbed/pvh-suspend-agent.sh "$old_id" 2>&1 | stamp >"$work/agent" &
	agent=$!
	for _ in $(seq 100); do
		grep -q watching "$work/agent" && break
		sleep 0.1
	done
fi

t0=$EPOCHREALTIME
xl -vvv migrate -s "" "$name" "dd bs=1M 2>$work/dd | xl migrate-receive" 2>&1 | stamp >"$log"
rc=${PIPESTATUS[0]}
t1=$EPOCHREALTIME
if [ -n "$agent" ]; then
	kill "$agent" 2>/dev/null
	wait "$agent" 2>/dev/null
	sort -n "$log" "$work/agent" -o "$log"
fi

# first time a line matching $1 arrived (empty if none)
first() { awk -v pat="$1" 'tolower($0) ~ pat { print $1; exit }' "$log"; }
t_suspended=$(first 'acknowledged and suspended|domain has suspended|calling xc_domain_shutdown')
t_started=$(first 'domain started')
bytes=$(awk '/bytes/ { print $1; exit }' "$work/dd")
new_id=$(xl domid "$name" 2>/dev/null)

# Xen's console lines carry "[   seconds.micro]" (console_timestamps=boot).
console_gap=
guest_stall=
if [ -n "$new_id" ]; then
	dm=$(xl dmesg)
	last_old=$(grep -a "^(d$old_id) \[" <<<"$dm" | tail -n 1 | sed 's/^[^[]*\[ *\([0-9.]*\)\].*/\1/')
	first_new=$(grep -a "^(d$new_id) \[" <<<"$dm" | head -n 1 | sed 's/^[^[]*\[ *\([0-9.]*\)\].*/\1/')
	if [ -n "$last_old" ] && [ -n "$first_new" ]; then
		console_gap=$(awk -v a="$last_old" -v b="$first_new" 'BEGIN { printf "%.3f", b - a }')
	fi
	guest_stall=$(grep -a "^(d$new_id) .*hmigt stall" <<<"$dm" | head -n 1 | sed 's/.* ms=\([0-9]*\).*/\1/')
fi

sub() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
total=$(sub "$t0" "$t1")
downtime=$(sub "$t_suspended" "$t_started")

printf 'xl-migrate domain=%s rc=%s old_id=%s new_id=%s total_s=%s downtime_s=%s bytes=%s console_gap_s=%s guest_stall_ms=%s\n' \
	"$name" "$rc" "$old_id" "${new_id:-}" "$total" "${downtime:-}" "${bytes:-}" \
	"${console_gap:-}" "${guest_stall:-}"
if [ -n "$json" ]; then
	printf '{"tool":"xl migrate","domain":"%s","rc":%s,"old_id":%s,"new_id":%s,"total_s":%s,"downtime_s":%s,"bytes":%s,"console_gap_s":%s,"guest_stall_ms":%s}\n' \
		"$name" "$rc" "$old_id" "${new_id:-null}" "${total:-null}" "${downtime:-null}" \
		"${bytes:-null}" "${console_gap:-null}" "${guest_stall:-null}" >"$json"
fi
exit "$rc"
