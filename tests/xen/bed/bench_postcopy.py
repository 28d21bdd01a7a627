#!/usr/bin/env python3
"""Xen post-copy against pre-copy and `xl migrate`, on one hmigt in one test
bed run (issue 10's figures, docs/benchmarks.md "Xen post-copy").

  flock /tmp/hmig-heavy.lock tests/xen/bed/bench_postcopy.py [--runs 3]
        [--mem 64] [--rates 2000,20000] [--tools precopy,hybrid,postcopy,prearm,xl]
        [--build DIR]

On the rebuilt hypervisor (post-copy needs mem_paging), one guest per write
rate moves back and forth within dom0, the tools taking turns:

  precopy   hmig --mode precopy, the default stop rule
  hybrid    hmig --mode hybrid with max_passes=1 and a stop rule that never
            converges: post-copy after pass 0, or inside it when the mid-pass
            look's byte forecast says so (it did on the test bed)
  postcopy  hmig --mode postcopy -o precopy_passes=0 (nothing before the
            switch: every frame is evicted inside the downtime)
  prearm    the same with recv's prearm=on (every frame evicted at open)
  xl        xl migrate through a pipe (xl-migrate-time)

hmig runs are plaintext without the level-1 digest (xl's stream is
plaintext, and the digest costs downtime) and every one is still checked
by hmigt's replay (integrity ok) and, in post-copy, by every evicted frame
coming back.  Per run: total (hmig: opening the domain + the source's
total_ms; xl: its wall time), downtime as each tool measures it, the stall
hmigt itself saw (its TSC gap: one yardstick for all), bytes, and for
post-copy the faults, their latency, blocktime, pulled/pushed and the
paging costs per frame.  TCG makes absolute times meaningless: the ratios
are the result.  Results: BUILD/xenbed/bench-postcopy/{runs.json,table.md}.
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402  (the Bed and the readers)
from bench import (by_rate, first_stall, fmt, med, new_guest, run_rotated, runs_cell,  # noqa: E402
                   save, tools_arg)

TOOLS = ("precopy", "hybrid", "postcopy", "prearm", "xl")
ARGS = {
    "precopy": ["--mode", "precopy"],
    "hybrid": ["--mode", "hybrid", "-o", "max_passes=1", "-o", "downtime_target_ms=0",
               "-o", "dirty_threshold_pages=0", "-o", "min_progress=0"],
    "postcopy": ["--mode", "postcopy", "-o", "precopy_passes=0"],
    "prearm": ["prearm=on", "--mode", "postcopy", "-o", "precopy_passes=0"],
}


def hmig_run(bed, name, rate, tool):
    dst = bed.sh("create", "hmigt--incoming", str(bed.mem), bed.cmdline, "paused")
    src = bed.guest
    m = suite.migration(bed, name, src, dst, "digest=off", *ARGS[tool])
    s, d = m["send"], m["recv"]
    if m["send_rc"] != 0 or m["recv_rc"] != 0 or not d or d.get("integrity") != "ok":
        raise RuntimeError("hmig run %s failed: %s %s" % (name, m["send_err"].strip(),
                                                          m["recv_err"].strip()))
    pg = d["xen"].get("paging_costs", {})
    if d["xen"].get("paging") and pg.get("loaded") != pg.get("evicted"):
        raise RuntimeError("run %s: %s frames evicted, %s loaded" % (
            name, pg.get("evicted"), pg.get("loaded")))
    bed.sh("wait-ops", dst, str(d["xen"]["replay_ops"]), "60")
    stall = first_stall(bed, dst)
    bed.sh("finish", src, dst, "hmigt")
    bed.guest = dst
    lat = d["faults"]["latency_us"]
    return {"tool": tool, "rate": rate,
            "total_s": (s["xen"]["open_ms"] + s["total_ms"]) / 1e3,
            "downtime_s": s["downtime_ms"] / 1e3, "guest_stall_ms": stall,
            "blackout_ms": d.get("guest_blackout_ms"), "bytes": s["bytes"]["total"],
            "passes": len(s["passes"]),
            "postcopy": (d["pages"]["pulled"] or 0) + (d["pages"]["pushed"] or 0) > 0,
            "faults": d["faults"]["count"], "lat_p50_ms": none_div(lat["p50"], 1e3),
            "lat_p99_ms": none_div(lat["p99"], 1e3),
            "blocktime_ms": d["faults"]["blocktime_ms"], "pulled": d["pages"]["pulled"],
            "pushed": d["pages"]["pushed"],
            "resume_to_complete_s": none_div(d.get("resume_to_complete_ms"), 1e3),
            "evicted": pg.get("evicted"), "evict_us": pg.get("evict_us_per_frame"),
            "load_us": pg.get("load_us_per_frame"), "open_ms_dest": d["xen"]["open_ms"],
            "requests": pg.get("requests")}


def none_div(v, k):
    return None if v is None else v / k


def table(runs, mem):
    out = ["%d MiB hmigt, medians (min–max)" % mem, "",
           "| rate | tool | runs | total s | downtime ms | guest stall ms | bytes MB | faults | fault p50 ms | fault p99 ms | blocktime ms | pulled / pushed | evict µs/frame | load µs/frame |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = ["", "Ratios of the medians (total, downtime, guest stall, bytes):", "",
              "| rate | tool | / pre-copy | / xl migrate |", "|---|---|---|---|"]
    keys = ("total_s", "downtime_s", "guest_stall_ms", "bytes")
    for rate, per in by_rate(runs, TOOLS):
        for tool, rows in per.items():
            pp = "-"
            if med(rows, "pulled")[0] is not None:
                pp = "%.0f / %.0f" % (med(rows, "pulled")[0], med(rows, "pushed")[0])
            out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                rate, tool, runs_cell(rows),
                fmt(med(rows, "total_s")), fmt(med(rows, "downtime_s"), "%.0f", 1e3),
                fmt(med(rows, "guest_stall_ms"), "%.0f"), fmt(med(rows, "bytes"), "%.0f", 1e-6),
                fmt(med(rows, "faults"), "%.0f"), fmt(med(rows, "lat_p50_ms"), "%.1f"),
                fmt(med(rows, "lat_p99_ms"), "%.1f"), fmt(med(rows, "blocktime_ms"), "%.0f"),
                pp, fmt(med(rows, "evict_us"), "%.0f"), fmt(med(rows, "load_us"), "%.0f")))

        def ratio(tool, base):
            if tool not in per or base not in per:
                return "-"
            r = []
            for k in keys:
                a, b = med(per[tool], k)[0], med(per[base], k)[0]
                r.append("%.2f" % (a / b) if a is not None and b else "-")
            return " / ".join(r)
        for tool in ("hybrid", "postcopy", "prearm", "precopy"):
            if tool in per:
                ratios.append("| %d | %s | %s | %s |" % (
                    rate, tool, ratio(tool, "precopy") if tool != "precopy" else "1",
                    ratio(tool, "xl")))
    return "\n".join(out + ratios) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mem", type=int, default=64)
    ap.add_argument("--rates", default="2000,20000")
    ap.add_argument("--tools", default=",".join(TOOLS))
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.realpath(os.path.join(here, "..", "..", ".."))
    ap.add_argument("--build", default=os.path.join(top, "build"))
    a = ap.parse_args()
    a.source, a.build, a.have_xen, a.xen = top, os.path.realpath(a.build), "1", "rebuilt"
    tools = tools_arg(ap, a, TOOLS)
    suite.can_run(a)
    bed = suite.Bed(a)
    bed.results = os.path.join(a.build, "xenbed", "bench-postcopy")
    bed.mem = a.mem
    os.makedirs(bed.results, exist_ok=True)
    runs = []
    try:
        bed.xenbed("build", timeout=3600)
        bed.xenbed(*bed.boot_args(), timeout=900)
        for rate in [int(r) for r in a.rates.split(",")]:
            bed.cmdline = "seed=11 rate=%d write=75 report=500 stall=50" % rate
            new_guest(bed)
            run_rotated(bed, runs, rate, a.runs, tools, hmig_run)
    finally:
        bed.xenbed("stop", check=False)
        save(bed, runs, None)
    save(bed, runs, table(runs, a.mem))


if __name__ == "__main__":
    main()
