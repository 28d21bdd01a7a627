#!/bin/bash
# The dom0 half of `xenbed sh`.  The host drops a job as q/ID.sh into the
# control share (/mnt/xenbed); this runs it with bash in its own session and
# writes ID.out, ID.err and finally ID.rc (the exit status, written last and
# renamed into place so the host never reads half of it).  A file q/ID.kill
# asks for the job's whole process group to be killed.
#
# Why not the serial console: its input drops characters when dom0 is busy,
# and it cannot carry an exit status or keep stdout apart from stderr.
#
# The idle loop forks nothing: it globs (a builtin) and sleeps with `read -t`
# on a FIFO nobody writes; under TCG every fork costs milliseconds of dom0 CPU.
export HOME=/root TERM=dumb
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
q=/mnt/xenbed/q
mkdir -p "$q"
mkfifo /run/xenbed-idle
exec 3<>/run/xenbed-idle

run_job() {
	local id=$1 cwd
	cwd=$(cat "$q/$id.cwd" 2>/dev/null)
	[ -d "$cwd" ] || cwd=/root
	cd "$cwd" || cd /root
	setsid -w bash -c 'echo $$ >"$1.pid"; exec bash "$1.job"' job "$q/$id" \
		>"$q/$id.out" 2>"$q/$id.err" </dev/null
	echo $? >"$q/$id.rc.tmp"
	mv "$q/$id.rc.tmp" "$q/$id.rc"
}

while true; do
	for f in "$q"/*.sh; do
		[ -e "$f" ] || continue
		id=${f##*/}
		id=${id%.sh}
		mv "$f" "$q/$id.job" || continue
		run_job "$id" &
	done
	for f in "$q"/*.kill; do
		[ -e "$f" ] || continue
		id=${f##*/}
		id=${id%.kill}
		pid=$(cat "$q/$id.pid" 2>/dev/null)
		[ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
		rm -f "$f"
	done
	read -r -t 0.2 -u 3
done
