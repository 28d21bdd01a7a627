#!/usr/bin/env python3
"""The Xen suite: hmig moving hmigt between two domains of one dom0, on a real
Xen 4.17 nested in QEMU (tests/xen/testbed).  Prints TAP for meson.

  suite.py --xen stock|rebuilt --source DIR --build DIR --have-xen 0|1

Builds the test bed (cached), boots it with the source and build trees shared
at their own paths, runs the cases in dom0 through tests/xen/bed/dom0.sh,
checks what they left in BUILD/xenbed/XEN/ (reports, exit statuses, stderr),
and stops the bed.  Skips, saying why, when this machine cannot run a bed
(not root, not Debian, too little memory, hmig without Xen, no hmigt) or when
HMIG_XENBED=skip.  Every migration is checked by both oracle levels; no
assertion is on a time.  tests/xen/README.md lists the cases.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
XENBED = os.path.join(HERE, "..", "testbed", "xenbed")
MEM = 64          # MiB: functional tests (DESIGN §6.1)
IDLE = "seed=5 rate=20 write=75 report=500 stall=100"
BUSY = "seed=9 rate=20000 write=75 report=500 stall=100"
# hmigt's data pages at 64 MiB: from gfn 0x400 to the end of the low RAM.
DATA_PAGES = 15360


class Bed:
    def __init__(self, a):
        self.a = a
        self.results = os.path.join(a.build, "xenbed", a.xen)
        # Another instance name in the environment keeps concurrent runs
        # (worktrees) apart.
        self.env = dict(os.environ, XENBED_INSTANCE=os.environ.get(
            "XENBED_INSTANCE", "hmig-suite-" + a.xen))
        hmig = os.path.join(a.build, "tools", "hmig", "hmig")
        self.auth = "--insecure"
        self.dom0 = ["env", "HMIG=" + hmig,
                     "HMIGT_CFG=" + os.path.join(a.build, "tests", "xen", "hmigt", "hmigt.cfg"),
                     "HMIGT_CHECK=" + os.path.join(a.build, "tests", "xen", "hmigt-check"),
                     "bash", os.path.join(HERE, "dom0.sh")]
        self.hmig = hmig

    def boot_args(self, serial_log=None):
        """xenbed's boot line: this Xen, the source and build trees shared at
        their own paths, and the serial console into serial_log if given."""
        a = self.a
        args = ["boot", "--xen", a.xen] + (["--serial-log", serial_log] if serial_log else [])
        for s in [a.source] + ([] if a.build.startswith(a.source + "/") else [a.build]):
            args += ["--share", s]
        return args

    def xenbed(self, *args, timeout=None, check=True):
        r = subprocess.run([XENBED] + list(args), env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode:
            raise RuntimeError("xenbed %s: exit %d: %s" % (args[0], r.returncode,
                                                         (r.stderr or r.stdout).strip()[-600:]))
        return r

    def use_psk(self):
        """Migrations as an operator runs them: TLS with a pre-shared key,
        made for this run in a private directory of the results (inside
        the share, so both hmig commands in dom0 read it) and deleted by
        drop_psk."""
        self.psk_dir = tempfile.mkdtemp(prefix="psk-", dir=self.results)
        psk = os.path.join(self.psk_dir, "mig.psk")
        subprocess.run([self.hmig, "keygen", "--psk", psk], check=True, capture_output=True)
        self.auth = "--tls-psk " + psk

    def drop_psk(self):
        if getattr(self, "psk_dir", None):
            shutil.rmtree(self.psk_dir, ignore_errors=True)
            self.psk_dir = None

    def sh(self, *args, timeout=900, check=True):
        """One dom0.sh verb in dom0: its stdout, stripped."""
        r = self.xenbed("sh", "--timeout", str(timeout), "--", *self.dom0[:1],
                        "HMIG_AUTH=" + self.auth, *self.dom0[1:], *args,
                        timeout=timeout + 60, check=False)
        if check and r.returncode:
            raise RuntimeError("dom0.sh %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                          r.stderr.strip()[-600:]))
        return r.stdout.strip()


def skip(why):
    print("1..0 # SKIP " + why)
    sys.exit(0)


def can_run(a):
    if os.environ.get("HMIG_XENBED") == "skip":
        skip("HMIG_XENBED=skip")
    if a.have_xen != "1":
        skip("hmig was built without Xen (install libxen-dev and reconfigure)")
    if os.geteuid() != 0:
        skip("the test bed needs root (debootstrap, apt-get, QEMU)")
    if not shutil.which("apt-get") or not os.path.exists("/etc/debian_version"):
        skip("the test bed builds from Debian's archive: not a Debian host")
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    if avail < 3 * 1024 * 1024:
        skip("the test bed needs 3 GiB of free memory, %d MiB are available" % (avail // 1024))
    if not os.path.exists(os.path.join(a.build, "tests", "xen", "hmigt", "hmigt.elf")):
        skip("hmigt was not built (gcc cannot link freestanding -m32 code)")


# ---------------------------------------------------------------- reading results

def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def load(path):
    text = read(path)
    return json.loads(text) if text else None


class Case:
    """Assertions of one case: each failed check adds a diagnostic line."""

    def __init__(self):
        self.fails = []
        # The source guest died on its own before hmig paused it (hmig
        # send said so): the test bed's known fault (tests/xen/README.md,
        # Pitfalls), not hmig's; main() runs such a case once more.
        self.source_died = False

    def check(self, cond, what):
        if not cond:
            self.fails.append(what)
        return cond


def one_line(text):
    lines = [l for l in (text or "").splitlines() if l.strip()]
    return len(lines) == 1, (lines[0] if lines else "")


def migration(bed, name, src, dst, *send_args, kill_recv=None):
    out = os.path.join(bed.results, name)
    args = ["migrate", out, src, dst]
    if kill_recv:
        args.append("kill-recv=%s" % kill_recv)
    bed.sh(*args, *send_args, timeout=1200)
    m = {"dir": out}
    for side in ("send", "recv"):
        rc = read(os.path.join(out, side + ".rc"))
        m[side + "_rc"] = int(rc) if rc and rc.strip().lstrip("-").isdigit() else None
        m[side + "_err"] = read(os.path.join(out, side + ".err"), "")
        m[side] = load(os.path.join(out, side + ".json"))
    hang = read(os.path.join(out, "hang.txt"))
    if hang:
        m["send_err"] += "\n(killed as hung; hang.txt:)\n" + hang[-6000:]
    return m


def check_migrated(c, bed, m, src, dst, min_passes=1):
    """A migration that worked: both sides ok, both oracle levels ran and
    said ok, the guest runs on at the destination and the source stays
    paused."""
    if not c.check(m["send_rc"] == 0 and m["recv_rc"] == 0,
                   "send exit %s (%s), recv exit %s (%s)" % (
                       m["send_rc"], m["send_err"].strip(), m["recv_rc"], m["recv_err"].strip())):
        c.source_died = ("domain %s " % src in m["send_err"] and
                         "there is nothing running to move" in m["send_err"] and
                         bed.sh("state", dst) == "paused")
        return
    s, d = m["send"], m["recv"]
    c.check(s["result"] == "ok" and d["result"] == "ok", "a report says failed")
    c.check(d["integrity"] == "ok", "integrity %s" % d["integrity"])
    x = d.get("xen", {})
    frames = x.get("frames", 0) - x.get("never_sent", 0)
    c.check(x.get("digest") and x.get("digest_frames") == frames and frames > 16000,
            "level 1: the destination checked %s of %s frames" % (x.get("digest_frames"), frames))
    c.check(x.get("replay_pages") == DATA_PAGES,
            "level 2: hmigt's replay compared %s pages, not %d" % (x.get("replay_pages"), DATA_PAGES))
    c.check(x.get("replay_ops", 0) > x.get("ops_at_pause", 1 << 62),
            "no progress on the destination before the oracle: %s ops at the pause, %s at verify"
            % (x.get("ops_at_pause"), x.get("replay_ops")))
    c.check(len(s["passes"]) >= min_passes,
            "%d passes, wanted at least %d" % (len(s["passes"]), min_passes))
    st = bed.sh("state", src)
    c.check(st == "paused", "the source domain is not left paused: %s" % st)
    st = bed.sh("state", dst)
    c.check(st == "running", "the destination domain does not run: %s" % st)
    # It runs on after hmig is gone: its counter passes the oracle's, and a
    # last independent replay (hmigt-check) agrees.
    c.check(bed.sh("wait-ops", dst, str(x.get("replay_ops", 0)), "120", check=False) != "",
            "the guest made no progress after the oracle")
    r = bed.xenbed("sh", "--", *bed.dom0, "check", dst, check=False)
    c.check(r.returncode == 0, "hmigt-check after the migration: %s" % (r.stderr or r.stdout).strip())


def check_refused(c, bed, m, src, wants, who="send"):
    """A migration refused in one line naming the problem; the source guest
    runs on, untouched."""
    rc, err = m[who + "_rc"], m[who + "_err"]
    single, line = one_line(err)
    c.check(rc not in (0, None), "%s succeeded" % who)
    c.check(single, "%s's stderr is not one line: %r" % (who, err))
    c.check(all(w in line for w in wants), "%r does not name %s" % (line, wants))
    st = bed.sh("state", src)
    c.check(st == "running", "the source domain does not run: %s" % st)
    before = bed.sh("ops", src) or "0"
    c.check(bed.sh("wait-ops", src, before, "60", check=False) != "",
            "the source guest made no progress afterwards")


# ---------------------------------------------------------------- the cases

def case_no_such_source(bed, g):
    c = Case()
    r = bed.xenbed("sh", "--", bed.hmig, "send", "--guest", "xen:domid=999", *bed.auth.split(),
                   "--to", "127.0.0.1:9", check=False)
    single, line = one_line(r.stderr)
    c.check(r.returncode == 1, "exit %d" % r.returncode)
    c.check(single and "no Xen domain 999" in line, "stderr %r" % r.stderr)
    return c


def new_dest(bed, g, how="paused", mem=MEM, cmdline=None, vcpus=None):
    bed.sh("destroy", "hmigt--incoming")
    args = ["create", "hmigt--incoming", str(mem), cmdline or g["cmdline"], how]
    if vcpus:
        args.append("vcpus=%d" % vcpus)
    return bed.sh(*args)


def case_postcopy_refused(bed, g):
    """Stock Xen has no mem_paging: the destination refuses post-copy at
    HELLO, naming the hypervisor option, before any page moves."""
    c = Case()
    dst = new_dest(bed, g)
    m = migration(bed, "postcopy-refused", g["id"], dst, "--mode", "postcopy")
    check_refused(c, bed, m, g["id"], ["PROTO_CAP_POSTCOPY", "post-copy", "CONFIG_MEM_PAGING"])
    c.check(m["send"] and m["send"]["pages"]["sent"] == 0 and m["send"]["pages"]["zero"] == 0,
            "pages moved before the refusal")
    st = bed.sh("state", dst)
    c.check(st == "paused", "the destination domain is not left paused: %s" % st)
    bed.sh("destroy", dst)
    return c


def case_source_lost_postcopy(bed, g):
    """hmig send killed in post-copy: the destination cannot run on with
    frames missing, so it fails, saying how many, and never reports
    success; the source domain was left paused at the commit with its memory
    intact, so unpausing it brings the guest back whole."""
    c = Case()
    dst = new_dest(bed, g)
    m = migration(bed, "postcopy-source-lost", g["id"], dst, "kill-send-postcopy=2",
                  "recv-o=recover_timeout_ms=3000", "--mode", "postcopy", "-o",
                  "precopy_passes=0", "-o", "rate_limit_bps=1048576", "-o", "push=seq")
    d = m["recv"] or {}
    single, line = one_line(m["recv_err"])
    c.check(m["recv_rc"] not in (0, None), "recv succeeded")
    c.check(d.get("result") == "failed", "the destination's report says %s" % d.get("result"))
    c.check(single and "post-copy failed" in line and "still missing" in line,
            "recv's stderr does not name the missing pages in one line: %r" % m["recv_err"])
    c.check(bed.sh("state", g["id"]) == "paused", "the source domain is not left paused")
    bed.sh("destroy", dst)
    bed.xenbed("sh", "--", "xl", "unpause", g["id"], check=False)
    r = bed.xenbed("sh", "--", *bed.dom0, "check", g["id"], check=False)
    c.check(r.returncode == 0, "hmigt-check of the source: %s" % (r.stderr or r.stdout).strip())
    before = bed.sh("ops", g["id"]) or "0"
    c.check(bed.sh("wait-ops", g["id"], before, "60", check=False) != "",
            "the source guest made no progress after its unpause")
    return c


def case_source_dies(bed, g):
    """A source guest that dies in pre-copy (hmigt die=: it triple-faults
    15 s into its run, inside a pass 0 of 32 s at 2 MiB/s that began 5-8 s
    into it; pre-copy mode, so it cannot switch to post-copy and take the
    dying guest along, and the death is seen at the pass's end): send
    fails in one line naming the domain, recv fails, and the destination
    never ran.  Its own pair of domains: the suite's guest is not touched.
    (On a slow day it dies before hmig opens it: the same line, at
    open.)"""
    c = Case()
    cmdline = g["cmdline"] + " die=15000"
    src = bed.sh("create", "hmigt-dies", str(MEM), cmdline)
    dst = new_dest(bed, g, cmdline=cmdline)
    m = migration(bed, "source-dies", src, dst, "--mode", "precopy",
                  "-o", "rate_limit_bps=2097152")
    single, line = one_line(m["send_err"])
    c.check(m["send_rc"] not in (0, None), "send succeeded")
    c.check(single and "domain %s " % src in line and "nothing running to move" in line,
            "send's stderr does not say in one line that domain %s died: %r" % (src, m["send_err"]))
    c.check(m["recv_rc"] not in (0, None), "recv succeeded")
    c.check((m["recv"] or {}).get("result") == "failed",
            "the destination's report says %s" % (m["recv"] or {}).get("result"))
    st = bed.sh("state", dst)
    c.check(st == "paused", "the destination domain ran: %s" % st)
    bed.sh("destroy", src, dst)
    return c


def case_contract(what, how, mem, wants, side):
    def run(bed, g):
        c = Case()
        dst = new_dest(bed, g, how=how, mem=mem, vcpus=2 if what == "vcpus" else None)
        m = migration(bed, "contract-" + what, g["id"], dst, "--mode", "precopy")
        check_refused(c, bed, m, g["id"], wants, who=side)
        bed.sh("destroy", dst)
        return c
    return run


def case_kill_recv(bed, g):
    c = Case()
    dst = new_dest(bed, g)
    # 8 MiB/s: pass 0 of 64 MiB lasts about 8 s, and dom0.sh kills recv 2 s
    # after the connection is up, inside it.
    m = migration(bed, "kill-recv", g["id"], dst, "--mode", "precopy",
                  "-o", "rate_limit_bps=8388608", kill_recv="2")
    check_refused(c, bed, m, g["id"], ["destination"])
    phases = [r["phase"] for r in (m["send"] or {}).get("timeline", [])]
    c.check("precopy" in phases, "the kill came before pre-copy began: %s" % phases)
    r = bed.xenbed("sh", "--", *bed.dom0, "check", g["id"], check=False)
    c.check(r.returncode == 0, "hmigt-check of the source: %s" % (r.stderr or r.stdout).strip())
    bed.sh("destroy", dst)
    return c


def check_postcopy(c, m, busy, prearm=False, foreign=False):
    """It ended in post-copy through Xen's paging ring: frames were made
    missing, each came back once (pulled or pushed), the guest ran while they
    were pulled (faults served, and at a write rate, ops done before the
    last frame came), paging is off again with nothing paged out."""
    s, d = m["send"] or {}, m["recv"] or {}
    if not s or not d:
        return
    pg = d.get("xen", {}).get("paging_costs", {})
    pages = d.get("pages", {})
    c.check(d.get("xen", {}).get("paging") is True and pg.get("evicted", 0) > 0,
            "no frame was made missing: %s" % d.get("xen"))
    c.check(pg.get("loaded") == pg.get("evicted"),
            "%s frames evicted, %s loaded back" % (pg.get("evicted"), pg.get("loaded")))
    c.check(pages.get("pulled", 0) + pages.get("pushed", 0) == pg.get("loaded"),
            "pulled %s + pushed %s is not the %s frames loaded" % (
                pages.get("pulled"), pages.get("pushed"), pg.get("loaded")))
    c.check(pages.get("pulled", 0) > 0 and d.get("faults", {}).get("count", 0) > 0,
            "no frame was pulled: the guest never waited for one (%s)" % d.get("faults"))
    c.check(pg.get("requests", 0) >= d.get("faults", {}).get("count", 0) > 0,
            "paging requests %s, faults %s" % (pg.get("requests"), d.get("faults")))
    c.check(s.get("bytes", {}).get("stopcopy", 1) == 0, "it stopped and copied")
    if busy:
        c.check((d.get("guest_ops_per_s_postcopy") or 0) > 0,
                "the guest made no progress during post-copy")
    if prearm:
        c.check(d["xen"].get("open_ms", 0) > 0 and pg.get("evicted") ==
                d["xen"]["frames"] - d["xen"]["never_sent"],
                "prearm evicted %s frames, not all" % pg.get("evicted"))
    if foreign:
        rc = read(os.path.join(m["dir"], "foreign.rc"), "").strip()
        c.check(rc == "0", "hmigt-check on the destination during post-copy: exit %s: %s" % (
            rc, read(os.path.join(m["dir"], "foreign.out"), "").strip()[-300:]))
        c.check(pg.get("foreign_requests", 0) > 0,
                "no FOREIGN paging request was served (%s)" % pg)
        # recv's status during post-copy carries the backend's figures.
        try:
            st = (load(os.path.join(m["dir"], "status.json")) or {}).get("return", {})
        except ValueError:
            st = {}
        sx = st.get("xen", {})
        c.check(st.get("side") == "destination" and sx.get("paging") is True and
                "paging_costs" in sx,
                "recv's hmig status during post-copy has no xen paging figures: %s (%s)" % (
                    st, read(os.path.join(m["dir"], "status.err"), "").strip()))


def migrate_case(name, mode, min_passes, *send_args, reason=None, stopcopy=False,
                 progress=False, postcopy=False, busy=False, prearm=False, foreign=False):
    def run(bed, g):
        c = Case()
        dst = new_dest(bed, g)
        extra = ((["progress=on"] if progress else []) + (["prearm=on"] if prearm else []) +
                 (["foreign-check"] if foreign else []))
        m = migration(bed, name, g["id"], dst, *extra, "--mode", mode, *send_args)
        check_migrated(c, bed, m, g["id"], dst, min_passes)
        if progress:
            # The progress line reads the library's status beside the
            # migration (tools/hmig/monitor.c): into a file, a plain line
            # at the end, and nothing else on stderr.
            for side, last in (("send", "done: "), ("recv", "complete: ")):
                lines = [l for l in m[side + "_err"].splitlines() if l.strip()]
                c.check(lines and all(l.startswith("hmig %s:" % side) for l in lines) and
                        last in lines[-1],
                        "%s's progress lines: %r" % (side, m[side + "_err"]))
        s = m["send"] or {}
        want = bed.a.xen == "rebuilt"
        c.check(s.get("postcopy_available") is want, "postcopy_available is not %s" % want)
        c.check((m["recv"] or {}).get("xen", {}).get("paging_available") is want,
                "the destination's paging_available is not %s" % want)
        if postcopy:
            check_postcopy(c, m, busy, prearm, foreign)
        if reason:
            c.check(s.get("switchover", {}).get("reason") == reason,
                    "switchover %s, wanted %s" % (s.get("switchover"), reason))
        if stopcopy:
            c.check(s.get("bytes", {}).get("stopcopy", 0) > 0, "no stop-and-copy")
            c.check(s.get("pages", {}).get("pushed", 1) == 0 and
                    s.get("pages", {}).get("pulled", 1) == 0, "post-copy moved pages")
        if m["send_rc"] == 0:
            bed.sh("finish", g["id"], dst, "hmigt")
            g["id"] = dst
        return c
    return run


def cases(xen):
    """(description, function, guest cmdline).  The guest is created once
    per cmdline and moves from case to case: each migration's destination is
    the next case's source."""
    idle = [
        ("a source domid that does not exist is one clear line", case_no_such_source),
    ]
    if xen == "stock":
        idle += [
            ("post-copy on a hypervisor without mem_paging is refused in one line naming CONFIG_MEM_PAGING",
             case_postcopy_refused),
            ("a destination with more memory breaks the contract: one line at dest_prepare",
             case_contract("memory", "paused", 96, ["frames", "memory"], "recv")),
            ("a destination with two vCPUs breaks the contract: one line at dest_prepare",
             case_contract("vcpus", "paused", MEM, ["vCPUs"], "recv")),
            ("a destination that was not created paused: one line at open",
             case_contract("running", "nopause", MEM, ["xl create -p"], "recv")),
            ("a destination with populate-on-demand (maxmem > memory): one line at open",
             case_contract("pod", "pod", MEM, ["populate-on-demand"], "recv")),
            ("killing hmig recv in pre-copy leaves the source domain running",
             case_kill_recv),
        ]
    idle.append(("pre-copy of an idle hmigt: one pass, both oracles ok, it runs on, progress shown",
                 migrate_case("precopy-idle", "precopy", 1, progress=True)))
    if xen == "rebuilt":
        # Pure post-copy: nothing is sent before the switch, every frame is
        # made missing and comes back by pull or push.  Pushing at 4 MiB/s
        # keeps post-copy going for about 16 s of pulls.
        idle += [
            ("post-copy of an idle hmigt through the paging ring: both oracles ok, it runs on",
             migrate_case("postcopy-idle", "postcopy", 0, "-o", "precopy_passes=0",
                          "-o", "rate_limit_bps=4194304", postcopy=True)),
            ("post-copy with the frames made missing at open (prearm), and a dom0 mapper "
             "(hmigt-check) reading evicted frames mid-way: FOREIGN requests served, no hang",
             migrate_case("postcopy-prearm-foreign", "postcopy", 0, "-o", "precopy_passes=0",
                          "-o", "rate_limit_bps=4194304", postcopy=True, prearm=True,
                          foreign=True)),
            ("the source lost in post-copy: the destination fails naming what is missing, "
             "the source domain comes back whole", case_source_lost_postcopy),
            ("a source guest that dies in pre-copy: send fails in one line naming it, "
             "the destination never runs", case_source_dies),
        ]
    busy = [
        # Three passes whatever the host's speed: nothing converges, nothing
        # gives up, until max_passes (a faster host would otherwise stop
        # after pass 0, its rest fitting the downtime target).
        ("pre-copy of hmigt at 20000 ops/s: three passes, both oracles ok, it runs on",
         migrate_case("precopy-busy", "precopy", 3, "-o", "max_passes=3", "-o",
                      "downtime_target_ms=0", "-o", "dirty_threshold_pages=0", "-o",
                      "min_progress=0", reason="max_passes")),
    ]
    if xen == "stock":
        busy.append(
            ("hybrid without mem_paging finishes by stop-and-copy where it would switch",
             migrate_case("hybrid-stopcopy", "hybrid", 1, "-o", "max_passes=1", "-o",
                          "downtime_target_ms=0", "-o", "dirty_threshold_pages=0",
                          reason="max_passes", stopcopy=True)))
    else:
        busy += [
            # It switches mid-pass 0 when its byte forecast says pre-copy
            # would cost more than post-copy (reason no_progress), else
            # after it (max_passes): which one follows the host's speed.
            ("hybrid of hmigt at 20000 ops/s: part or all of pass 0, then post-copy through the paging ring",
             migrate_case("hybrid-postcopy", "hybrid", 1, "-o", "max_passes=1", "-o",
                          "downtime_target_ms=0", "-o", "dirty_threshold_pages=0",
                          "-o", "rate_limit_bps=8388608", postcopy=True, busy=True)),
            ("post-copy of hmigt at 20000 ops/s: it runs on while its frames are pulled",
             migrate_case("postcopy-busy", "postcopy", 0, "-o", "precopy_passes=0",
                          "-o", "rate_limit_bps=4194304", postcopy=True, busy=True)),
        ]
    return [(d, f, IDLE) for d, f in idle] + [(d, f, BUSY) for d, f in busy]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xen", required=True, choices=["stock", "rebuilt"])
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--have-xen", default="1")
    a = ap.parse_args()
    a.source, a.build = os.path.realpath(a.source), os.path.realpath(a.build)
    can_run(a)
    bed = Bed(a)
    todo = cases(a.xen)
    only = os.environ.get("HMIG_XENBED_CASES")
    if only:
        # Debugging one case: a comma-separated list of words, a case runs
        # when its description holds one of them.
        todo = [t for t in todo if any(w in t[0] for w in only.split(","))]
    print("1..%d" % len(todo), flush=True)
    shutil.rmtree(bed.results, ignore_errors=True)
    os.makedirs(bed.results)
    bed.use_psk()
    t0 = time.monotonic()
    r = subprocess.run([XENBED, "build"], env=bed.env, capture_output=True, text=True)
    if r.returncode:
        print("Bail out! xenbed build failed: %s" % (r.stderr or r.stdout).strip()[-800:])
        bed.drop_psk()
        sys.exit(1)
    print("# bed built (or found cached) in %.0f s" % (time.monotonic() - t0), flush=True)
    boot = bed.boot_args(os.path.join(bed.results, "serial.log"))
    t1 = time.monotonic()
    try:
        bed.xenbed(*boot, timeout=900)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("Bail out! the test bed did not boot: %s" % e)
        bed.xenbed("stop", check=False)
        bed.drop_psk()
        sys.exit(1)
    print("# %s Xen booted in %.0f s" % (a.xen, time.monotonic() - t1), flush=True)
    failed = 0
    guest = {"cmdline": None, "id": None}

    def new_guest(cmdline, *gone):
        """A fresh hmigt running cmdline, the old ones (and gone) destroyed."""
        bed.sh("destroy", "hmigt", "hmigt--incoming", *gone)
        return {"cmdline": cmdline, "id": bed.sh("create", "hmigt", str(MEM), cmdline)}
    try:
        for n, (desc, fn, cmdline) in enumerate(todo, 1):
            t = time.monotonic()
            try:
                if (guest["cmdline"] != cmdline or guest["id"] is None or
                        bed.sh("state", guest["id"]) != "running"):
                    guest = new_guest(cmdline)
                c = fn(bed, guest)
                if c.source_died:
                    print("# %s: the source hmigt died on its own before the pause (%s); "
                          "once more with a new one" % (desc, one_line(c.fails[0])[1][:300]),
                          flush=True)
                    guest = new_guest(cmdline, guest["id"])
                    c = fn(bed, guest)
                if c.fails and guest["id"] and bed.sh("state", guest["id"]) != "running":
                    c.fails.append("post-mortem of the guest, domain %s:\n%s" % (
                        guest["id"], bed.sh("post-mortem", guest["id"], check=False)))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                c = Case()
                c.fails.append(str(e))
                guest = {"cmdline": None, "id": None}
            ok = not c.fails
            failed += not ok
            print("%s %d - %s: %s (%.0f s)" % ("ok" if ok else "not ok", n, a.xen, desc,
                                              time.monotonic() - t), flush=True)
            for f in c.fails:
                print("#   " + f.replace("\n", "\n#   "), flush=True)
    finally:
        bed.xenbed("stop", check=False)
        bed.drop_psk()
    print("# %s: %d of %d cases failed, %.0f s in all (results in %s)"
          % (a.xen, failed, len(todo), time.monotonic() - t0, bed.results), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
