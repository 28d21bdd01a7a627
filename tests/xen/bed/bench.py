#!/usr/bin/env python3
"""hmig against `xl migrate`, side by side on one hmigt in one test bed run.

  flock /tmp/hmig-heavy.lock tests/xen/bed/bench.py [--xen rebuilt|stock]
        [--runs 5] [--mem 128] [--rates 2000,20000] [--tools hmig,hmig-tls,xl]
        [--build DIR]

For each hmigt write rate, one guest moves back and forth within dom0:
hmig pre-copy (the digest off: it costs downtime) in plaintext
(--insecure: xl migrate's stream is plaintext, so this is the like-for-like
comparison), hmig pre-copy over TLS 1.3 with a pre-shared key made for the
run (what an operator runs), and `xl migrate` (xl-migrate-time, through a
pipe, no ssh) take turns, --runs times each.
Per run it records total time (hmig: opening the domain to the return of
hmig_source_run, the report's total_ms, and the same plus the `xl create -p` of the destination, which
xl migrate does inside its own time; xl: xl migrate's wall time), bytes on
the wire, the downtime each tool measures (hmig: the source's pause to the
destination's RESUMED; xl: the guest's suspension to "Domain started") and
the stall hmigt itself saw on the destination (its TSC gap: the same
yardstick for both).  Every hmig run is still checked by hmigt's replay
(hmig recv's oracle) and counts only if it says ok.  A run that fails (either
tool) is kept in runs.json with its error, and in the table as "+N failed";
if the guest died, its post-mortem goes beside the run's results and a
fresh hmigt continues.  The bed's serial log is kept (serial.log).

TCG makes absolute times meaningless; the ratios hmig/xl are the result
(docs/benchmarks.md).  Results: BUILD/xenbed/bench/{runs.json,table.md}.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402  (the Bed and the readers)


def first_stall(bed, dom):
    out = bed.xenbed("sh", "--", "bash", "-c",
                     "xl dmesg | grep -a '^(d%s) .*hmigt stall' | head -n 1" % dom,
                     check=False).stdout
    return float(out.split("ms=")[1].split()[0]) if "ms=" in out else None


def failed(bed, name, tool, rate, why):
    """A run that did not complete: counted in the table, never in the
    figures.  When the guest does not run any more (a crash: hmigt has no
    IDT, so any exception triple-faults), its post-mortem is kept with the
    run's results and a fresh guest takes its place for the next run."""
    r = {"tool": tool, "rate": rate, "failed": True, "error": why.strip()[-400:]}
    if bed.sh("state", bed.guest, check=False) != "running":
        r["post_mortem"] = bed.sh("post-mortem", bed.guest, check=False)
        with open(os.path.join(bed.results, name, "post-mortem.txt"), "w") as f:
            f.write(r["post_mortem"] + "\n")
        new_guest(bed)
    else:
        bed.sh("destroy", "hmigt--incoming", check=False)
    return r


def new_guest(bed):
    bed.sh("destroy", "hmigt", "hmigt--incoming")
    bed.guest = bed.sh("create", "hmigt", str(bed.mem), bed.cmdline)


def hmig_run(bed, name, rate, tool):
    bed.auth = bed.psk_auth if tool == "hmig-tls" else "--insecure"
    t = time.monotonic()
    dst = bed.sh("create", "hmigt--incoming", str(bed.mem), bed.cmdline, "paused")
    create_s = time.monotonic() - t
    src = bed.guest
    m = suite.migration(bed, name, src, dst, "digest=off", "--mode", "precopy")
    s, d = m["send"], m["recv"]
    if m["send_rc"] != 0 or m["recv_rc"] != 0 or not d or d.get("integrity") != "ok":
        return failed(bed, name, tool, rate, "send exit %s: %s; recv exit %s: %s; integrity %s" % (
            m["send_rc"], m["send_err"], m["recv_rc"], m["recv_err"], (d or {}).get("integrity")))
    bed.sh("wait-ops", dst, str(d["xen"]["replay_ops"]), "60")
    stall = first_stall(bed, dst)
    bed.sh("finish", src, dst, "hmigt")
    bed.guest = dst
    # From opening the domain (its frame list) to hmig_source_run's return
    # (total_ms): not the wait for the destination oracle's verdict after.
    total = (s["xen"]["open_ms"] + s["total_ms"]) / 1e3
    return {"tool": tool, "rate": rate, "total_s": total, "total_with_create_s": total + create_s,
            "bytes": s["bytes"]["total"], "downtime_s": s["downtime_ms"] / 1e3,
            "guest_stall_ms": stall, "blackout_ms": d.get("guest_blackout_ms"),
            "passes": len(s["passes"]), "create_s": create_s,
            "stale_pages": s["switchover"]["stale_pages"],
            "cipher": (s.get("security") or {}).get("cipher")}


def xl_run(bed, name, rate, tool="xl"):
    out = os.path.join(bed.results, name)
    bed.sh("xl-migrate", out, "hmigt", timeout=1200)
    x = suite.load(os.path.join(out, "xl.json"))
    if not x or x.get("rc") != 0 or not x.get("new_id") or str(x["new_id"]) == bed.guest:
        # xl's log is kept beside the results (dom0.sh xl-migrate).
        return failed(bed, name, tool, rate, "xl migrate: %s" % json.dumps(x))
    bed.guest = str(x["new_id"])
    bed.sh("wait-ops", bed.guest, "0", "60")
    return {"tool": "xl", "rate": rate, "total_s": x["total_s"], "bytes": x["bytes"],
            "downtime_s": x["downtime_s"], "guest_stall_ms": x["guest_stall_ms"]}


def med(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None and not r.get("failed")]
    return (statistics.median(v), min(v), max(v)) if v else (None, None, None)


def fmt(t, form="%.2f", scale=1.0):
    m, lo, hi = t
    if m is None:
        return "-"
    return ("%s (%s–%s)" % (form, form, form)) % (m * scale, lo * scale, hi * scale)


TOOLS = ("hmig", "hmig-tls", "xl")
HMIG = ("hmig", "hmig-tls")


def tools_arg(ap, a, known):
    """--tools as a list, each one of known, or a usage error."""
    tools = [t for t in a.tools.split(",") if t]
    if not tools or any(t not in known for t in tools):
        ap.error("--tools takes a list of %s" % ", ".join(known))
    return tools


def run_rotated(bed, runs, rate, n, tools, hmig_run):
    """n rounds of every tool at one rate; who goes first rotates, so that a
    drift in the host's load favours no tool.  Each result is printed and
    kept in runs."""
    for i in range(n):
        for k in range(len(tools)):
            tool = tools[(i + k) % len(tools)]
            run = xl_run if tool == "xl" else hmig_run
            r = run(bed, "%s-%d-%d" % (tool, rate, i), rate, tool)
            r["load"] = os.getloadavg()[0]
            runs.append(r)
            print(json.dumps(r), flush=True)


def save(bed, runs, t):
    """runs.json and table.md beside the bed's results; the table printed."""
    with open(os.path.join(bed.results, "runs.json"), "w") as f:
        json.dump(runs, f, indent=1)
    if t is not None:
        with open(os.path.join(bed.results, "table.md"), "w") as f:
            f.write(t)
        print(t)


def by_rate(runs, tools):
    """Each rate's runs as (rate, {tool: rows}): the tools in the given
    order, those that ran."""
    for rate in sorted({r["rate"] for r in runs}):
        per = {t: [r for r in runs if r["rate"] == rate and r["tool"] == t] for t in tools}
        yield rate, {t: rows for t, rows in per.items() if rows}


def runs_cell(rows):
    """A table's runs column: how many ended ok, and how many failed."""
    failed = sum(1 for r in rows if r.get("failed"))
    return "%d%s" % (len(rows) - failed, " (+%d failed)" % failed if failed else "")


def table(runs, mem):
    lines = ["| hmigt rate (ops/s) | tool | runs | total s | total with create s | bytes MB | downtime ms | guest stall ms | passes |",
             "|---|---|---|---|---|---|---|---|---|"]
    ratios = ["", "Ratios of the medians, hmig / xl migrate:", "",
              "| hmigt rate (ops/s) | hmig | total | with create | bytes | downtime | guest stall |",
              "|---|---|---|---|---|---|---|"]
    for rate, per in by_rate(runs, TOOLS):
        for tool, rows in per.items():
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                rate, tool if tool != "hmig" else "hmig (plaintext)", runs_cell(rows),
                fmt(med(rows, "total_s")),
                fmt(med(rows, "total_with_create_s")) if tool in HMIG else "-",
                fmt(med(rows, "bytes"), "%.0f", 1e-6), fmt(med(rows, "downtime_s"), "%.0f", 1e3),
                fmt(med(rows, "guest_stall_ms"), "%.0f"),
                fmt(med(rows, "passes"), "%.0f") if tool in HMIG else "-"))
        for tool in HMIG:
            if tool not in per or "xl" not in per:
                continue
            r = []
            for key, xkey in (("total_s", "total_s"), ("total_with_create_s", "total_s"),
                              ("bytes", "bytes"), ("downtime_s", "downtime_s"),
                              ("guest_stall_ms", "guest_stall_ms")):
                a, b = med(per[tool], key)[0], med(per["xl"], xkey)[0]
                r.append("%.2f" % (a / b) if a is not None and b else "-")
            ratios.append("| %d | %s | %s |" % (rate, "plaintext" if tool == "hmig" else "TLS",
                                                " | ".join(r)))
    return "\n".join(["%d MiB hmigt, medians (min–max)" % mem, ""] + lines + ratios) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xen", default="rebuilt", choices=["stock", "rebuilt"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--rates", default="2000,20000")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="which of hmig (plaintext), hmig-tls and xl to run")
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.realpath(os.path.join(here, "..", "..", ".."))
    ap.add_argument("--build", default=os.path.join(top, "build"))
    a = ap.parse_args()
    a.source, a.build, a.have_xen = top, os.path.realpath(a.build), "1"
    tools = tools_arg(ap, a, TOOLS)
    suite.can_run(a)
    bed = suite.Bed(a)
    bed.results = os.path.join(a.build, "xenbed", "bench")
    bed.mem = a.mem
    shutil.rmtree(bed.results, ignore_errors=True)
    os.makedirs(bed.results)
    bed.use_psk()
    bed.psk_auth = bed.auth
    runs = []
    try:
        bed.xenbed("build", timeout=3600)
        bed.xenbed(*bed.boot_args(os.path.join(bed.results, "serial.log")), timeout=900)
        for rate in [int(r) for r in a.rates.split(",")]:
            bed.cmdline = "seed=11 rate=%d write=75 report=500 stall=50" % rate
            new_guest(bed)
            run_rotated(bed, runs, rate, a.runs, tools, hmig_run)
    finally:
        bed.xenbed("stop", check=False)
        bed.drop_psk()
        save(bed, runs, None)
    save(bed, runs, table(runs, a.mem))


if __name__ == "__main__":
    main()
