#!/usr/bin/env python3
"""The figures of docs/benchmarks.md, "Failures and recovery (issue 12)":
what a lost link costs a post-copy, on the fault suite's bed (netlab.py:
two namespaces, a veth pair, TLS with a pre-shared key, no relay on the
path).

    figures.py HMIG [RUNS]        (default 5; needs root)

Each run migrates a 256 MiB guest in post-copy from the first byte
(precopy_passes=0) with the push capped at 64 MiB/s, so that post-copy
lasts about 4 s and the guest (uniform writes, 20000/s) keeps pulling.
Once 64 MiB have crossed, the link goes down for OUTAGE_S, then up.  Per
run: the time from link up to the destination's "recovered" event and to
its first pull after it (timeline rows every 10 ms: that is the
resolution), the pages the source sent again after the recovery, and the
destination's fault figures (the longest fault, the summed blocktime);
the same runs without the outage give the blocktime to compare.  The
outcome of every run is checked as in the suite: integrity ok on both
sides."""

import statistics
import sys
import tempfile
import time

import faults
from faults import MIB, Bed, when_bytes_crossed
from netlab import check_privileges, remove_stale, sh

OUTAGE_S = 3.0  # two io_timeouts: both sides notice, then recover
SAMPLE_MS = 10


def unix_ms(report, row):
    return report["start_unix_ms"] + row["t_ms"]


def one_run(cut):
    workdir = tempfile.mkdtemp(prefix="hmig-figures-")
    bed = Bed(workdir, relay=False)
    try:
        bed.start(mode="postcopy", mem="256M", knobs=["precopy_passes=0"], rate=64 * MIB,
                  workload="uniform:rate=20000", warmup=0.5, sample_ms=SAMPLE_MS)
        t_up = None
        if cut:
            when_bytes_crossed(bed, 64 * MIB)
            bed.link.down("s")
            time.sleep(OUTAGE_S)
            bed.link.up()
            t_up = time.time() * 1000
        bed.finish()
        bed.expect_guest_on_dest(recovered=cut)
        s, d = bed.src.report, bed.dst.report
        out = dict(blocktime_ms=d["faults"]["blocktime_ms"],
                   max_fault_ms=d["faults"]["latency_us"]["max"] / 1000,
                   faults=d["faults"]["count"])
        if cut:
            rows = d["timeline"]
            before = [r for r in rows if unix_ms(d, r) <= t_up]
            pulled0 = before[-1]["pages_pulled"] if before else 0
            rec = next(r for r in rows if r["event"] == "recovered" and unix_ms(d, r) > t_up)
            flow = next(r for r in rows if unix_ms(d, r) > t_up and r["pages_pulled"] > pulled0)
            out.update(to_recovered_ms=unix_ms(d, rec) - t_up,
                       to_pulls_ms=unix_ms(d, flow) - t_up,
                       resent=s["pages_resent_after_recovery"],
                       paused_ms=d["recovery_paused_ms"])
        return out
    finally:
        bed.close()
        sh("rm", "-rf", workdir, check=False)


def summary(name, values, unit):
    return "| %s | %.0f %s | %.0f to %.0f |" % (name, statistics.median(values), unit,
                                             min(values), max(values))


def main(argv):
    faults.HMIG = argv[1]
    runs = int(argv[2]) if len(argv) > 2 else 5
    check_privileges()
    remove_stale()
    cut, base = [], []
    for i in range(runs):
        cut.append(one_run(True))
        print("cut  %d: %s" % (i + 1, cut[-1]), flush=True)
        base.append(one_run(False))
        print("base %d: %s" % (i + 1, base[-1]), flush=True)
    print("| figure (%d runs, outage %.0f s) | median | range |" % (runs, OUTAGE_S))
    print("|---|---|---|")
    print(summary("link up to the destination's \"recovered\"", [r["to_recovered_ms"] for r in cut], "ms"))
    print(summary("link up to the first pull after it", [r["to_pulls_ms"] for r in cut], "ms"))
    print(summary("pages re-sent after the recovery", [r["resent"] for r in cut], "pages"))
    print(summary("destination's time paused (recovery_paused_ms)", [r["paused_ms"] for r in cut], "ms"))
    print(summary("longest fault, with the outage", [r["max_fault_ms"] for r in cut], "ms"))
    print(summary("longest fault, no outage", [r["max_fault_ms"] for r in base], "ms"))
    print(summary("blocktime, with the outage", [r["blocktime_ms"] for r in cut], "ms"))
    print(summary("blocktime, no outage", [r["blocktime_ms"] for r in base], "ms"))
    print(summary("faults, with the outage", [r["faults"] for r in cut], ""))
    print(summary("faults, no outage", [r["faults"] for r in base], ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
