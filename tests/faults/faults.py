#!/usr/bin/env python3
"""Fault injection on real links: `hmig send` and `hmig recv` in two network
namespaces joined by a veth pair (netlab.py), over TLS with a pre-shared key,
the link cut at each point of each phase, either side stopped, killed or
cancelled, one direction dropped.  Each case asserts the outcome
docs/protocol.md ("The handover, and every way it can fail") gives: where the
guest runs, that it runs in one place only, the exit statuses, and the
oracle's verdict after every recovery.

    faults.py HMIG [CASE-SUBSTRING...]      run the suite (or the cases named)
    faults.py HMIG --list

Needs root; exits 77 (skipped, with the reason) without it.  Output: one line
per case, then Criterion's closing line so tools/run counts the cases.
"""

import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback

from netlab import (BULK, COMMIT, DONE, DS, LOADED, PAGES, PASS_END, RECOVER, RESUMED, SD,
                    STALE, SYNC, VCPU_STATE, KeyLog, Link, Relay, Side, Skip, Watch,
                    check_privileges, rec, remove_stale, sh, stopped)

HMIG = None
MIB = 1 << 20
IO_TIMEOUT_MS = 1500
RECOVER_TIMEOUT_MS = 20000
GIVE_UP_MS = 3000  # recover_timeout_ms where a case waits for a side to give up
HANG_S = 120  # a process still running after this long has hung


class Bed:
    """One case's world: the link, the relay (unless the case runs without),
    the watch, both processes."""

    def __init__(self, workdir, relay=True):
        self.workdir = workdir
        self.link = Link()
        self.watch = Watch()
        self.relay = relay
        self.proxy = None
        self.src = self.dst = None

    def start(self, mode="precopy", mem="64M", workload="uniform:rate=20000", warmup=0.3,
              run_after=0.2, io_timeout_ms=IO_TIMEOUT_MS, recover_timeout_ms=RECOVER_TIMEOUT_MS,
              rate=32 * MIB, knobs=(), tls=True, sample_ms=None):
        """Starts `hmig recv`, then `hmig send` (through the relay unless the
        case runs without).  tls: both sides on one pre-shared key, as in
        production; each logs its TLS secrets for the relay to read the
        records.  Else --insecure, the plaintext path."""
        common = ["-o", "io_timeout_ms=%d" % io_timeout_ms,
                  "-o", "recover_timeout_ms=%d" % recover_timeout_ms, "--no-progress"]
        if sample_ms is not None:
            common += ["-o", "sample_ms=%d" % sample_ms]
        env = {k: dict(os.environ) for k in ("src", "dst")}
        keylogs = []
        if tls:
            psk = os.path.join(self.workdir, "mig.psk")
            sh(HMIG, "keygen", "--psk", psk)
            common += ["--tls-psk", psk]
            for k in env:
                env[k]["SSLKEYLOGFILE"] = os.path.join(self.workdir, k + ".keys")
                keylogs.append(env[k]["SSLKEYLOGFILE"])
        else:
            common += ["--insecure"]
        listen = "%s:0" % self.link.ip["d"]
        rfd, wfd = os.pipe()
        self.dst = Side("dst", self.link.ns["d"],
                        [HMIG, "recv", "--listen", listen, "--ready-fd", str(wfd),
                         "--run-after", str(run_after), "-o", "accept_timeout_ms=60000"] + common,
                        self.workdir, pass_fds=(wfd,), env=env["dst"])
        os.close(wfd)
        with os.fdopen(rfd) as r:
            addr = r.readline().strip()
        assert addr, "hmig recv did not start listening: " + self.dst.stderr
        if self.relay:
            self.proxy = Relay(self.link, self.watch, int(addr.rsplit(":", 1)[1]),
                               io_timeout_ms, KeyLog(keylogs) if tls else None)
            to = self.proxy.addr
        else:
            to = addr
        argv = [HMIG, "send", "--to", to, "--mem", mem, "--workload", workload,
                "--warmup", str(warmup), "--mode", mode, "-o", "connect_timeout_ms=5000"]
        argv += common
        if rate:
            argv += ["-o", "rate_limit_bps=%d" % rate]
        for k in knobs:
            argv += ["-o", k]
        self.src = Side("src", self.link.ns["s"], argv, self.workdir, env=env["src"])

    def at(self, pred, action):
        self.watch.when(pred, action)

    def cut_at(self, pred, end="s"):
        """Cuts the link just before the record pred names enters it."""
        ev = threading.Event()

        def act(e):
            self.link.down(end)
            ev.set()
            return "cut"
        self.watch.when(pred, act)
        return ev

    def wait_for(self, pred, what, timeout=60):
        return self.watch.wait(pred, timeout, what)

    def finish(self, timeout=HANG_S):
        """Waits for both processes; the link comes back up if it is down."""
        try:
            for side in (self.src, self.dst):
                if side:
                    side.wait(timeout)
        finally:
            if not self.link.is_up:
                self.link.up()

    def close(self):
        for side in (self.src, self.dst):
            if side and side.running():
                side.signal(signal.SIGCONT)
                side.signal(signal.SIGKILL)
                side.p.wait()
        if self.proxy:
            self.proxy.close()
        self.link.close()

    # ---- outcomes

    def dst_started(self):
        """The destination started the guest: its report says so, or (killed,
        no report) its RESUMED crossed the link."""
        if self.dst.report:
            return "resumed" in self.dst.phases()
        return self.watch.seen(rec(DS, RESUMED))

    def committed(self):
        if self.relay:
            return self.watch.seen(rec(SD, COMMIT))
        return "commit" in self.src.phases()

    def invariants(self):
        """What holds whatever happened: the guest runs in one place at most,
        and never on a destination that had no commit."""
        if self.dst_started():
            assert self.committed(), "the destination started the guest without a COMMIT"
        if self.src.rc == 1 and "the guest runs here" in self.src.stderr:
            assert not self.committed(), "the source resumed its guest after committing"
            assert not self.dst_started(), \
                "two running copies: the source says the guest runs there, the destination started it"
        if self.src.rc == 0:
            assert self.dst_started(), "the source exited 0 but the destination never ran the guest"
        if self.dst.rc == 0:
            r = self.dst.report
            assert r and r["integrity"] == "ok", "destination exited 0 without integrity ok"

    def expect_guest_on_source(self):
        """Failed before the commit: the source keeps its guest, both exit 1,
        the destination never started it."""
        self.invariants()
        assert self.src.rc == 1, "source exited %s (want 1): %s" % (self.src.rc, self.src.stderr)
        assert "the guest runs here" in self.src.stderr, \
            "source did not say the guest runs there: " + self.src.stderr
        assert self.dst.rc == 1 or self.dst.killed, \
            "destination exited %s (want 1): %s" % (self.dst.rc, self.dst.stderr)
        assert not self.dst_started(), "the destination started the guest"
        assert not self.committed(), "the source committed"
        return "guest on the source; src 1, dst %s" % ("killed" if self.dst.killed else 1)

    def expect_guest_on_dest(self, recovered=True):
        """Handed over: both exit 0, integrity ok on both reports; after a
        lost link both sides count the recovery."""
        self.invariants()
        assert self.src.rc == 0, "source exited %s (want 0): %s" % (self.src.rc, self.src.stderr)
        assert self.dst.rc == 0, "destination exited %s (want 0): %s" % (self.dst.rc,
                                                                          self.dst.stderr)
        s, d = self.src.report, self.dst.report
        assert d["integrity"] == "ok" and s["integrity"] == "ok", (s["integrity"], d["integrity"])
        if recovered:
            assert s["recoveries"] >= 1, "the source counted no recovery"
            assert d["recoveries"] >= 1, "the destination counted no recovery"
        return "guest on the destination, integrity ok; src 0, dst 0, recoveries %d/%d" % (
            s["recoveries"], d["recoveries"])


# ------------------------------------------------------------ helpers

def pages_after(d, after_type, k, kind=BULK):
    """The k-th PAGES record (direction d) after the first `after_type` one."""
    state = {"seen": 0}

    def p(ev):
        if ev["what"] != "rec" or ev["d"] != d:
            return False
        if ev["type"] == after_type:
            state["armed"] = True
            return False
        if state.get("armed") and ev["type"] == PAGES and ev["kind"] == kind:
            state["seen"] += 1
            return state["seen"] == k
        return False
    return p


def cut_until_both_gave_up(bed, pred, end="s"):
    """A long cut before the commit: down at pred, up once both processes
    have exited (each gave up on its own)."""
    fired = bed.cut_at(pred, end)
    assert fired.wait(60), "the cut point never came"
    for side in (bed.src, bed.dst):
        side.wait(HANG_S)
    bed.link.up()


def cut_until_noticed(bed, pred, end="s", finish=True):
    """A long cut after the commit: down at pred; up once the source has
    tried to reconnect (it noticed the loss) and one more io_timeout has
    passed, so that the destination's silence timeout has run out too."""
    fired = bed.cut_at(pred, end)
    assert fired.wait(60), "the cut point never came"
    t = time.monotonic()
    bed.wait_for(lambda e: e["what"] == "conn" and e["gen"] >= 2 and e["t"] > t,
                 "the source's reconnection attempt", timeout=60)
    time.sleep(IO_TIMEOUT_MS / 1000)
    bed.link.up()
    if finish:
        bed.finish()


def signal_at(bed, side, sig, pred):
    """Sends sig to one side just before the record pred names crosses."""
    fired = threading.Event()

    def act(e):
        side.signal(sig)
        fired.set()
    bed.at(pred, act)
    assert fired.wait(60), "the %s point never came" % signal.Signals(sig).name


# ------------------------------------------------------------ the cases

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def table(rows, run):
    """One case per row: rows are (name, *args), each case run(bed, *args)."""
    for name, *args in rows:
        def fn(bed, args=args):
            return run(bed, *args)
        fn.__name__ = name
        CASES.append(fn)


# Where a case starts the migration (Bed.start's arguments), and where in
# it the fault strikes: a predicate on the relay's events, made afresh for
# each case (pages_after counts).
PASS0 = {}
LATER_PASS = dict(knobs=["max_passes=4", "min_progress=0"])
HANDOVER = dict(knobs=["max_passes=1"])  # one pass, then straight to the handover
STOPCOPY = dict(HANDOVER, workload="uniform:rate=50000")  # stop-and-copy pages to cut
POSTCOPY_HANDOVER = dict(mode="postcopy", knobs=["precopy_passes=1"])
POSTCOPY = dict(mode="postcopy", knobs=["precopy_passes=0"], rate=8 * MIB,
                workload="uniform:rate=2000")  # about 8 s of push, pulls throughout


def giving_up(phase):
    """The phase with recover_timeout_ms short: a case that waits for a side
    to give up after the commit."""
    return dict(phase, recover_timeout_ms=GIVE_UP_MS)


def in_pass0():
    return rec(SD, PAGES, n=16)


def in_a_later_pass():
    return pages_after(SD, PASS_END, 3)


def in_stopcopy():
    return pages_after(SD, VCPU_STATE, 2)


def in_postcopy():
    return pages_after(SD, COMMIT, 8)


def at(d, rtype, n=None):
    return lambda: rec(d, rtype, n=n)


# ---- the link cut before the commit: the guest stays on the source

def cut_before_commit(bed, phase, point, end, dst_says):
    bed.start(**phase)
    cut_until_both_gave_up(bed, point(), end)
    out = bed.expect_guest_on_source()
    assert dst_says in bed.dst.stderr, bed.dst.stderr
    return out


# The destination that sent LOADED cannot know whether the source committed:
# it waits recover_timeout_ms for it, then fails without ever starting.
table([
    ("cut_in_pass0", PASS0, in_pass0, "s", ""),
    ("cut_in_a_later_pass", LATER_PASS, in_a_later_pass, "s", ""),
    ("cut_at_settle_sync", HANDOVER, at(SD, SYNC, 1), "s", ""),
    ("cut_before_stale", HANDOVER, at(SD, STALE, 1), "s", ""),
    ("cut_before_vcpu_state", HANDOVER, at(SD, VCPU_STATE), "s", ""),
    ("cut_in_stopcopy_pages", STOPCOPY, in_stopcopy, "s", ""),
    ("cut_with_loaded_in_flight_stopcopy", giving_up(HANDOVER), at(DS, LOADED), "d",
     "never started the guest"),
    ("cut_with_loaded_in_flight_postcopy", giving_up(POSTCOPY_HANDOVER), at(DS, LOADED), "d",
     "never started the guest"),
], cut_before_commit)


@case
def short_blip_in_pass0_is_ridden_out(bed):
    """Down for a fifth of io_timeout_ms: TCP retransmits, nobody gives up."""
    bed.start(io_timeout_ms=4000)
    fired = bed.cut_at(in_pass0())
    assert fired.wait(60)
    time.sleep(0.2)
    bed.link.up()
    bed.finish()
    return bed.expect_guest_on_dest(recovered=False)


# ---- the link cut after the commit: recovered, the guest on the destination

def cut_after_commit(bed, phase, point, end):
    bed.start(**phase)
    cut_until_noticed(bed, point(), end)
    return bed.expect_guest_on_dest()


def in_late_postcopy():
    return pages_after(SD, COMMIT, 48)


table([
    ("cut_with_commit_in_flight_stopcopy", HANDOVER, at(SD, COMMIT), "s"),
    ("cut_with_commit_in_flight_postcopy", POSTCOPY_HANDOVER, at(SD, COMMIT), "s"),
    ("cut_with_resumed_in_flight_postcopy", POSTCOPY_HANDOVER, at(DS, RESUMED), "d"),
    # Most pages pushed: 48 of the 64 MiB (a slow guest pulls few).
    ("cut_in_late_postcopy", dict(POSTCOPY, rate=16 * MIB), in_late_postcopy, "s"),
    # --insecure: the plaintext path (CRC32C per page) recovers the same way.
    ("cut_in_postcopy_plaintext", dict(POSTCOPY, tls=False), in_postcopy, "s"),
], cut_after_commit)


@case
def cut_with_the_destinations_recover_answer_in_flight(bed):
    bed.start(**POSTCOPY)
    second = bed.cut_at(rec(DS, RECOVER, n=1), end="d")
    cut_until_noticed(bed, in_postcopy(), finish=False)
    assert second.wait(60), "the source never reconnected"
    t = time.monotonic()
    bed.wait_for(lambda e: e["what"] == "conn" and e["t"] > t, "another reconnection attempt")
    time.sleep(IO_TIMEOUT_MS / 1000)
    bed.link.up()
    bed.finish()
    return bed.expect_guest_on_dest()


# ---- the link cut at random moments, and with no relay on the path

@case
def twenty_cuts_at_random_moments_of_one_postcopy(bed):
    """20 cuts of random length (some shorter than io_timeout_ms, ridden out
    by TCP; some longer, recovered) at random moments of one post-copy."""
    rng = random.Random(int(os.environ.get("HMIG_FAULTS_SEED", "12")))
    bed.start(mode="postcopy", mem="48M", knobs=["precopy_passes=0"], rate=1 * MIB,
              workload="uniform:rate=100", recover_timeout_ms=20000)
    bed.wait_for(rec(SD, COMMIT), "the commit")
    for i in range(20):
        time.sleep(rng.uniform(0.2, 1.0))
        assert not bed.watch.seen(rec(DS, DONE)), "post-copy ended after %d cuts" % i
        bed.link.down(rng.choice("sd"))
        time.sleep(rng.choice([rng.uniform(0.05, 0.5), rng.uniform(2.0, 3.0)]))
        bed.link.up()
    bed.finish()
    return bed.expect_guest_on_dest() + ", 20 cuts"


def veth_rx_bytes(bed, end):
    r = sh("ip", "-n", bed.link.ns[end], "-s", "-j", "link", "show", "dev", bed.link.dev[end])
    return json.loads(r.stdout)[0]["stats64"]["rx"]["bytes"]


def when_bytes_crossed(bed, nbytes, timeout=60):
    """Observation without a relay: the destination's end of the veth has
    received nbytes."""
    deadline = time.monotonic() + timeout
    while veth_rx_bytes(bed, "d") < nbytes:
        assert time.monotonic() < deadline, "the traffic never reached %d bytes" % nbytes
        time.sleep(0.01)


def no_relay(fn):
    fn.relay = False
    return fn


@case
@no_relay
def direct_link_cut_in_pass0(bed):
    bed.start()
    when_bytes_crossed(bed, 16 * MIB)
    bed.link.down("s")
    for side in (bed.src, bed.dst):
        side.wait(HANG_S)
    bed.link.up()
    return bed.expect_guest_on_source()


@case
@no_relay
def direct_link_cut_in_postcopy(bed):
    """Post-copy from the first byte (0 passes): past 8 MiB the commit is
    long done; the link stays down for 3 io_timeouts."""
    bed.start(**POSTCOPY)
    when_bytes_crossed(bed, 8 * MIB)
    bed.link.down("d")
    time.sleep(3 * IO_TIMEOUT_MS / 1000)
    bed.link.up()
    bed.finish()
    return bed.expect_guest_on_dest()


@case
@no_relay
def one_gib_postcopy_with_the_link_cut_for_5_s(bed):
    """issue 12's "done when": a 1 GiB post-copy whose link is down for 5 s
    (more than three io_timeouts: both sides give it up and recover)."""
    bed.start(mode="postcopy", mem="1G", knobs=["precopy_passes=0"], rate=256 * MIB,
              workload="uniform:rate=20000", warmup=0.5)
    when_bytes_crossed(bed, 256 * MIB)
    bed.link.down("s")
    time.sleep(5)
    bed.link.up()
    bed.finish()
    return bed.expect_guest_on_dest() + ", 1 GiB"


# ---- SIGSTOP either side longer than io_timeout_ms

def stop_at(bed, side, pred):
    signal_at(bed, side, signal.SIGSTOP, pred)
    deadline = time.monotonic() + 10
    while not stopped(side.pid):
        assert time.monotonic() < deadline, "SIGSTOP did not stop %s" % side.name
        time.sleep(0.01)


@case
def sigstop_destination_in_pass0(bed):
    bed.start()
    stop_at(bed, bed.dst, in_pass0())
    bed.src.wait(HANG_S)  # it gives up on a destination that stopped reading
    bed.dst.signal(signal.SIGCONT)
    bed.finish()
    return bed.expect_guest_on_source()


@case
def sigstop_source_in_pass0(bed):
    bed.start()
    stop_at(bed, bed.src, in_pass0())
    bed.dst.wait(HANG_S)  # it gives up on a silent source
    bed.src.signal(signal.SIGCONT)
    bed.finish()
    return bed.expect_guest_on_source()


@case
def sigstop_source_in_postcopy(bed):
    bed.start(**POSTCOPY)
    stop_at(bed, bed.src, in_postcopy())
    t = time.monotonic()
    bed.wait_for(lambda e: e["what"] == "closed" and e["side"] == "d" and e["t"] > t,
                 "the destination giving up the link")
    bed.src.signal(signal.SIGCONT)
    bed.finish()
    return bed.expect_guest_on_dest()


@case
def sigstop_destination_in_postcopy(bed):
    """The destination stops reading in post-copy: the source pauses for
    recovery within about io_timeout_ms (it never fails on its own), and
    picks up once the destination runs again."""
    bed.start(**POSTCOPY)
    stop_at(bed, bed.dst, in_postcopy())
    t = time.monotonic()
    bed.wait_for(lambda e: e["what"] == "conn" and e["gen"] >= 2 and e["t"] > t,
                 "the source's reconnection attempt")
    bed.dst.signal(signal.SIGCONT)
    bed.finish()
    return bed.expect_guest_on_dest()


# ---- SIGINT / SIGTERM: cancel before the commit, refused after it

def cancel(bed, phase, who, sig, point):
    """A cancel before the commit (Ctrl-C is SIGINT): the guest keeps
    running on the source, and both sides say it was cancelled."""
    bed.start(**phase)
    signal_at(bed, getattr(bed, who), sig, point())
    bed.finish()
    out = bed.expect_guest_on_source()
    for side in (bed.src, bed.dst):
        assert "cancel" in side.stderr, "%s did not say it was cancelled: %s" % (side.name,
                                                                               side.stderr)
    return out + ", both say cancelled"


table([
    ("ctrl_c_source_in_pass0", PASS0, "src", signal.SIGINT, in_pass0),
    ("sigterm_source_in_a_later_pass", LATER_PASS, "src", signal.SIGTERM, in_a_later_pass),
    ("ctrl_c_destination_in_pass0", PASS0, "dst", signal.SIGINT, in_pass0),
], cancel)


@case
def ctrl_c_source_in_postcopy_is_refused(bed):
    """After the commit the guest is the destination's: the source says
    why it does not cancel and completes the migration."""
    bed.start(**POSTCOPY)
    signal_at(bed, bed.src, signal.SIGINT, in_postcopy())
    bed.finish()
    out = bed.expect_guest_on_dest(recovered=False)
    assert "not cancelled" in bed.src.stderr, bed.src.stderr
    return out + ", the source refused the cancel"


# ---- kill -9 either side in each phase

def kill_at(bed, side, pred):
    signal_at(bed, side, signal.SIGKILL, pred)
    bed.finish()


def expect_destination_failed_unstarted(bed, why):
    bed.invariants()
    assert bed.dst.rc == 1, "destination exited %s: %s" % (bed.dst.rc, bed.dst.stderr)
    assert not bed.dst_started(), "the destination started the guest"
    assert why in bed.dst.stderr, bed.dst.stderr
    return "source killed; dst 1 (%s), never started" % why


def kill_source(bed, phase, point, dst_says):
    """Killed before the commit took effect: the destination fails and
    never started the guest; the source's guest died with it."""
    bed.start(**phase)
    kill_at(bed, bed.src, point())
    return expect_destination_failed_unstarted(bed, dst_says)


# Killed before it read LOADED, it never committed: the destination waits
# recover_timeout_ms for it, then fails, never having started.
table([
    ("kill_source_in_pass0", PASS0, in_pass0, "closed the connection"),
    ("kill_source_in_a_later_pass", LATER_PASS, in_a_later_pass, "closed the connection"),
    ("kill_source_in_stopcopy", STOPCOPY, in_stopcopy, "closed the connection"),
    ("kill_source_with_loaded_in_flight", giving_up(HANDOVER), at(DS, LOADED),
     "never started the guest"),
], kill_source)


@case
def kill_source_with_commit_in_flight_stopcopy(bed):
    """The COMMIT got out: the destination holds every page and starts."""
    bed.start(**HANDOVER)
    kill_at(bed, bed.src, rec(SD, COMMIT))
    bed.invariants()
    assert bed.dst.rc == 0, bed.dst.stderr
    return "source killed; guest on the destination, integrity ok; dst 0"


@case
def kill_source_in_postcopy(bed):
    """Only the source held the missing pages: the guest is lost, and the
    destination says so after recover_timeout_ms."""
    bed.start(**giving_up(POSTCOPY))
    kill_at(bed, bed.src, in_postcopy())
    bed.invariants()
    assert bed.dst.rc == 1, bed.dst.stderr
    assert "still missing" in bed.dst.stderr, bed.dst.stderr
    return "source killed; dst 1 (pages still missing: the guest is lost, as documented)"


def kill_destination(bed, phase, point, src_says, committed):
    """Before LOADED reached the source it resumes its guest; after, it has
    committed, never resumes and says where the guest belongs."""
    bed.start(**phase)
    kill_at(bed, bed.dst, point())
    bed.invariants()
    assert bed.src.rc == 1, "source exited %s: %s" % (bed.src.rc, bed.src.stderr)
    assert src_says in bed.src.stderr, bed.src.stderr
    assert bed.committed() == committed, "committed: %s" % bed.committed()
    return "destination killed; src 1 (%s)" % src_says


table([
    ("kill_destination_in_pass0", PASS0, in_pass0, "the guest runs here", False),
    ("kill_destination_in_a_later_pass", LATER_PASS, in_a_later_pass, "the guest runs here",
     False),
    ("kill_destination_before_loaded", HANDOVER, at(SD, STALE, 1), "the guest runs here", False),
    ("kill_destination_with_loaded_in_flight", giving_up(HANDOVER), at(DS, LOADED),
     "the guest belongs to the destination", True),
    ("kill_destination_in_postcopy", giving_up(POSTCOPY), in_postcopy,
     "the guest belongs to the destination", True),
], kill_destination)


# ---- a proxy that drops one direction only

def drop_from(bed, pred, gens=None):
    """From the record pred names on, the relay drops that direction of the
    connections of generations `gens` (None: every connection, now and
    later) of the same kind... of every kind."""
    state = {"on": False, "d": None}

    def start(e):
        state["on"], state["d"] = True, e["d"]
        return "drop"

    def more(e):
        return (e["what"] == "rec" and state["on"] and e["d"] == state["d"]
                and (gens is None or e["gen"] in gens))
    bed.at(pred, start)
    bed.watch.when(more, lambda e: "drop", once=False)


@case
def drop_everything_the_destination_says_from_resumed_stopcopy(bed):
    """The split brain of issue 12: RESUMED and all after it never reach the
    source.  The destination runs the guest; the source, committed, never
    resumes it and says where it belongs."""
    bed.start(**giving_up(HANDOVER))
    drop_from(bed, rec(DS, RESUMED))
    bed.finish()
    bed.invariants()
    assert bed.dst.rc == 0, bed.dst.stderr
    assert bed.src.rc == 1 and "the guest belongs to the destination" in bed.src.stderr, \
        bed.src.stderr
    return "guest on the destination only; dst 0 integrity ok, src 1 (belongs to the destination)"


@case
def drop_everything_the_destination_says_from_resumed_postcopy(bed):
    """The same in post-copy, on every connection after: the source never
    hears RESUMED, a request or an answer to its reconnections.  It never
    resumes its copy: once recover_timeout_ms has run out it says the guest
    belongs to the destination.  The destination runs the guest (one copy)
    until it gives up on the pages it lacks."""
    bed.start(**giving_up(POSTCOPY_HANDOVER))
    drop_from(bed, rec(DS, RESUMED))
    bed.finish()
    bed.invariants()
    assert bed.dst_started(), "the destination never started the guest"
    assert bed.src.rc == 1 and "the guest belongs to the destination" in bed.src.stderr, \
        bed.src.stderr
    if bed.dst.rc == 0:
        return "guest on the destination only; dst 0 integrity ok, src 1 (belongs to the destination)"
    assert "still missing" in bed.dst.stderr, bed.dst.stderr
    return "guest on the destination only, until it gave up on the pages it lacked; dst 1, src 1"


def drop(bed, phase, point, gens, guest_on):
    bed.start(**phase)
    drop_from(bed, point(), gens)
    bed.finish()
    return bed.expect_guest_on_dest() if guest_on == "dst" else bed.expect_guest_on_source()


table([
    # Before the commit: the side that hears nothing fails, the guest stays.
    ("drop_what_the_source_says_in_pass0", PASS0, in_pass0, None, "src"),
    ("drop_what_the_destination_says_at_settle", HANDOVER, at(DS, SYNC), None, "src"),
    # On the first connection only, after the commit: recovered.  COMMIT and
    # all after it lost: the destination waits, the source reconnects and
    # commits again.
    ("drop_what_the_destination_says_from_resumed_once_postcopy", POSTCOPY_HANDOVER,
     at(DS, RESUMED), (1,), "dst"),
    ("drop_what_the_source_says_from_commit_once", HANDOVER, at(SD, COMMIT), (1,), "dst"),
], drop)


def main(argv):
    global HMIG
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    HMIG = os.path.abspath(argv[1])
    names = argv[2:]
    if names == ["--list"]:
        for fn in CASES:
            print(fn.__name__)
        return 0
    try:
        check_privileges()
    except Skip as e:
        print("faults: skipped: %s" % e)
        print("[====] Synthesis: Tested: 0 | Passing: 0 | Failing: 0 | Crashing: 0 | Skipped: %d"
              % len(CASES))
        return 77  # meson's "skipped"
    # A timeout (meson's SIGTERM) unwinds through each case's cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    remove_stale()
    chosen = [fn for fn in CASES if not names or any(n in fn.__name__ for n in names)]
    passed = failed = 0
    t_all = time.monotonic()
    rows = []
    for fn in chosen:
        t = time.monotonic()
        workdir = tempfile.mkdtemp(prefix="hmig-faults-")
        bed = None
        try:
            bed = Bed(workdir, relay=getattr(fn, "relay", True))
            outcome = fn(bed)
            passed += 1
            status = "ok"
        except Exception as e:  # noqa: BLE001 -- a case's failure, reported
            failed += 1
            status = "FAILED"
            outcome = "%s: %s" % (type(e).__name__, e)
            traceback.print_exc()
            if bed and bed.src:
                print("  source stderr: %s" % bed.src.stderr.strip()[-600:])
            if bed and bed.dst:
                print("  destination stderr: %s" % bed.dst.stderr.strip()[-600:])
            if bed:
                print("  on the link: %s" % bed.watch.summary())
        finally:
            if bed:
                bed.close()
            if status == "ok":
                sh("rm", "-rf", workdir, check=False)
            else:
                print("  files kept in %s" % workdir)
        dt = time.monotonic() - t
        rows.append((fn.__name__, status, outcome, dt))
        print("%-6s %-45s %5.1f s  %s" % (status, fn.__name__, dt, outcome), flush=True)
    print("faults: %d cases in %.0f s" % (len(chosen), time.monotonic() - t_all))
    # tools/run counts cases from Criterion's closing line.
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0"
          % (passed + failed, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
