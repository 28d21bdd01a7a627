#!/bin/bash
# The dom0 half of the Xen suite (suite.py runs it through `xenbed sh`):
# small verbs that drive xl, hmig and hmigt-check in dom0 and leave what they
# saw in files under a results directory the host reads.  Assertions are the
# host's; this only acts and records.
#
#   dom0.sh create NAME MEM_MIB CMDLINE [run|paused|nopause|pod] [KEY=VALUE...]
#                                   xl create hmigt (more xl settings after):
#                                   prints the domid; for `run` waits until it
#                                   reports progress
#   dom0.sh ops DOMID               hmigt's last reported ops_done (xl dmesg)
#   dom0.sh wait-ops DOMID MIN S    wait up to S s for ops_done > MIN, print it
#   dom0.sh check DOMID             hmigt-check (pauses it briefly)
#   dom0.sh state DOMID             running | paused | gone (xl list)
#   dom0.sh migrate OUT SRC DST [kill-recv=S] [digest=off] [progress=on] [prearm=on]
#               [foreign-check] [kill-send-postcopy=S] [recv-o=KEY=VALUE...] [hmig send options...]
#                                   hmig recv into DST, hmig send from SRC
#                                   (with the level-1 digest unless
#                                   digest=off, with --no-progress unless
#                                   progress=on); OUT/{send,recv}.{rc,out,err,json};
#                                   kill-recv: SIGKILL recv S s after the
#                                   source connected; prearm=on: recv makes
#                                   DST's frames missing at open;
#                                   foreign-check: once DST runs, recv's
#                                   hmig status (OUT/status.json), then
#                                   hmigt-check of DST (a dom0 mapper of
#                                   frames still missing), OUT/foreign.{rc,out};
#                                   kill-send-postcopy: SIGKILL send S s
#                                   after DST runs (the source lost in
#                                   post-copy); recv-o: a knob for recv
#   dom0.sh xl-migrate OUT NAME     xl migrate to this host, timed (OUT/xl.json)
#   dom0.sh destroy NAME|DOMID...   xl destroy, ignoring what is gone
#   dom0.sh post-mortem DOMID       xl list, the domain's last lines, xenctx
#   dom0.sh finish SRC DST NAME     destroy the source, name the destination
#
# Environment: HMIG (the hmig binary), HMIGT_CFG, HMIGT_CHECK, and HMIG_AUTH,
# the credential options both hmig commands take ("--tls-psk FILE", or
# "--insecure").
set -uo pipefail
: "${HMIG:?}" "${HMIGT_CFG:?}" "${HMIGT_CHECK:?}"
read -r -a auth <<<"${HMIG_AUTH:---insecure}"

verb=$1
shift

# hmigt's last progress line of domain $1: its ops_done, or nothing.
last_ops() {
	xl dmesg | grep -a "^(d$1) .*hmigt ops=" | tail -n 1 | sed 's/.* ops=\([0-9]*\) .*/\1/'
}

wait_ops() {
	local dom=$1 min=$2 limit=$3 t0=$SECONDS o
	while :; do
		o=$(last_ops "$dom")
		if [ -n "$o" ] && [ "$o" -gt "$min" ]; then
			echo "$o"
			return 0
		fi
		if [ $((SECONDS - t0)) -ge "$limit" ]; then
			echo "dom0.sh: domain $dom made no progress past ${min} ops in $limit s" >&2
			xl dmesg | grep -a "(d$dom)" | tail -n 3 >&2
			return 1
		fi
		sleep 0.5
	done
}

case $verb in
create)
	name=$1 mem=$2 cmdline=$3 how=${4:-run}
	shift 3
	[ $# -gt 0 ] && shift
	flags=() maxmem=$mem
	case $how in
	paused) flags=(-p) ;;
	pod) flags=(-p) maxmem=$((mem * 2)) ;;
	nopause) ;;
	esac
	xl destroy "$name" >/dev/null 2>&1
	xl create "${flags[@]}" "$HMIGT_CFG" "name=\"$name\"" "memory=$mem" "maxmem=$maxmem" \
		"cmdline=\"$cmdline\"" "$@" 2>&1 | grep -v 'tsc mode string' >&2
	id=$(xl domid "$name") || exit 1
	[ "$how" = run ] && { wait_ops "$id" 0 120 >/dev/null || exit 1; }
	echo "$id"
	;;
ops)
	last_ops "$1"
	;;
wait-ops)
	wait_ops "$1" "$2" "$3"
	;;
check)
	"$HMIGT_CHECK" "$1"
	;;
state)
	line=$(xl list 2>/dev/null | awk -v d="$1" '$2 == d { print $5 }')
	case $line in
	"") echo gone ;;
	*d*) echo "dying ($line)" ;;
	*s*|*c*) echo "shut down ($line)" ;;
	*p*) echo paused ;;
	*) echo running ;;
	esac
	;;
migrate)
	out=$1 src=$2 dst=$3
	shift 3
	kill_after= digest=,digest=on progress=--no-progress prearm= foreign= kill_send= recv_o=()
	while :; do
		case ${1:-} in
		kill-recv=*) kill_after=${1#kill-recv=}; shift ;;
		digest=off) digest=; shift ;;
		progress=on) progress=; shift ;;
		prearm=on) prearm=,prearm=on; shift ;;
		foreign-check) foreign=1; shift ;;
		kill-send-postcopy=*) kill_send=${1#kill-send-postcopy=}; shift ;;
		recv-o=*) recv_o+=(-o "${1#recv-o=}"); shift ;;
		*) break ;;
		esac
	done
	mkdir -p "$out"
	rm -f "$out"/*
	# recv prints its address on fd 3 once it listens (prearm: after it
	# made every frame missing, which takes a while under TCG).
	# --no-progress unless progress=on: stderr is then the error alone,
	# which the cases read as one line (the progress line goes to stderr
	# too, every 5 s into a file, and a last time when the migration ends).
	# accept_timeout: a send that fails before it connects must not leave
	# recv waiting for ever.
	"$HMIG" recv --guest "xen:domid=$dst$prearm" --listen 127.0.0.1:0 --ready-fd 3 "${auth[@]}" \
		$progress --json "$out/recv.json" --run-after 3 -o io_timeout_ms=600000 \
		-o accept_timeout_ms=120000 "${recv_o[@]}" \
		>"$out/recv.out" 2>"$out/recv.err" 3>"$out/addr" &
	rpid=$!
	for _ in $(seq 3000); do
		[ -s "$out/addr" ] && break
		kill -0 "$rpid" 2>/dev/null || break
		sleep 0.1
	done
	addr=$(head -n 1 "$out/addr" 2>/dev/null)
	if [ -z "$addr" ]; then
		wait "$rpid"
		echo $? >"$out/recv.rc"
		echo 125 >"$out/send.rc"
		exit 0
	fi
	if [ -n "$kill_after" ]; then
		port=${addr##*:}
		(
			while [ -z "$(ss -Htn state established "( sport = :$port )")" ]; do
				sleep 0.1
			done
			sleep "$kill_after"
			kill -KILL "$rpid"
		) &
	fi
	# DST unpaused: post-copy began (up to 300 s).
	wait_running() {
		for _ in $(seq 6000); do
			st=$(xl list 2>/dev/null | awk -v d="$dst" '$2 == d { print $5 }')
			case $st in
			*p*|"") sleep 0.05 ;;
			*) return 0 ;;
			esac
		done
		return 1
	}
	if [ -n "$foreign" ]; then
		# Read all of hmigt's memory through foreign mappings while
		# frames are still missing.
		(
			wait_running
			# What recv's control socket says meanwhile: its
			# status with the backend's figures (docs/control.md).
			"$HMIG" status --json "$rpid" >"$out/status.json" 2>"$out/status.err"
			"$HMIGT_CHECK" "$dst" >"$out/foreign.out" 2>&1
			echo $? >"$out/foreign.rc"
		) &
		fpid=$!
	fi
	t0=$EPOCHREALTIME
	"$HMIG" send --guest "xen:domid=$src$digest" --to "$addr" "${auth[@]}" --warmup 0 \
		$progress -o io_timeout_ms=600000 \
		--json "$out/send.json" "$@" >"$out/send.out" 2>"$out/send.err" &
	spid=$!
	if [ -n "$kill_send" ]; then
		( wait_running && sleep "$kill_send" && kill -KILL "$spid" ) &
	fi
	# A migration that makes no end in HMIG_BED_HANG_S (420 s; the
	# longest case takes about 3 min under TCG) is a hang: what each side
	# says and where its threads wait goes to OUT/hang.txt, then both go.
	(
		exec >/dev/null 2>&1 </dev/null
		sleep "${HMIG_BED_HANG_S:-420}"
		kill -0 "$spid" 2>/dev/null || kill -0 "$rpid" 2>/dev/null || exit 0
		{
			echo "== no end after ${HMIG_BED_HANG_S:-420} s"
			for p in "$spid" "$rpid"; do
				kill -0 "$p" 2>/dev/null || continue
				echo "== hmig status $p"
				timeout 10 "$HMIG" status "$p" 2>&1
				for t in /proc/"$p"/task/*; do
					echo "-- thread ${t##*/} $(cat "$t/comm" 2>/dev/null) wchan $(cat "$t/wchan" 2>/dev/null)"
					cat "$t/stack" 2>/dev/null
				done
			done
			echo "== xl list"
			xl list
			echo "== xl dmesg"
			xl dmesg | tail -n 40
		} >"$out/hang.txt" 2>&1
		kill -KILL "$spid" "$rpid" 2>/dev/null
	) &
	dog=$!
	wait "$spid"
	echo $? >"$out/send.rc"
	t1=$EPOCHREALTIME
	wait "$rpid"
	echo $? >"$out/recv.rc"
	[ -n "$foreign" ] && wait "$fpid"
	pkill -P "$dog" 2>/dev/null
	kill "$dog" 2>/dev/null
	wait "$dog" 2>/dev/null
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >"$out/send.seconds"
	;;
xl-migrate)
	out=$1 name=$2
	mkdir -p "$out"
	xl-migrate-time "$name" "$out/xl.json" >"$out/xl.out" 2>"$out/xl.err"
	rc=$?
	echo $rc >"$out/xl.rc"
	[ $rc = 0 ] || cp /var/log/xen/xl-migrate-time.log "$out/"
	;;
destroy)
	for d in "$@"; do xl destroy "$d" >/dev/null 2>&1; done
	true
	;;
post-mortem)
	# What became of domain $1: its state, its last words, its registers,
	# what its xl daemon saw, Xen's last lines.
	xl list
	xl dmesg | grep -a "(d$1)\|d$1v0" | grep -av "hmigt ops=" | tail -n 8
	xenctx -a "$1" 2>&1 | head -n 12
	tail -n 5 /var/log/xen/xl-hmigt*.log
	xl dmesg | grep -av "hmigt \|save: \|restore: " | tail -n 5
	;;
finish)
	src=$1 dst=$2 name=$3
	xl destroy "$src" && xl rename "$dst" "$name"
	;;
*)
	echo "dom0.sh: unknown verb $verb" >&2
	exit 2
	;;
esac
