"""From reports to figures: one CSV row per run, from the source's and the
destination's reports, and the summary of each cell (median, min and max
over its runs).  Each figure comes from the side that measures it
(docs/report.md): passes, bytes, downtime and the switchover from the
source; integrity, faults, pulled and pushed pages from the destination.
The merged report each run also keeps is 'hmig report --json''s.

Pure functions of their inputs, unit-tested in test_bench.py.
"""
import csv
import json
import statistics

from config import knobs

MB = 1e6


def run_result(src, dst):
    """(result, errors) of a migration from its two reports: ok only if both
    say ok; failed if either failed or is missing; else cancelled.  The
    errors are each not-ok side's, prefixed as 'hmig report' prefixes them."""
    errors, sides = [], []
    for name, doc in (("source", src), ("destination", dst)):
        r = (doc or {}).get("result")
        sides.append(r if r in ("ok", "cancelled") else "failed")
        if doc is None:
            errors.append(f"{name}: no report")
        elif r != "ok":
            errors.append(f"{name}: {doc.get('error') or 'no error message'}")
    result = ("failed" if "failed" in sides else
              "cancelled" if "cancelled" in sides else "ok")
    return result, errors


def load_report(path):
    """A report file's document, or None when it is missing or not JSON (a
    side that died before writing it)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _get(doc, path, default=None):
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return default
        doc = doc[part]
    return doc


def _event_t(timeline, name):
    for row in timeline or []:
        if row.get("event") == name:
            return row["t_ms"]
    return None


def migration_ms(src, dst):
    """From the source's first timeline row (SETUP) to the later of the two
    sides' last event rows ("done", "complete"), on the source's clock.
    Sample rows can trail the last event by up to a sample_ms.  The
    source's total_ms is not the migration's length: hmig_source_wait_verdict()
    writes the report again once the destination's oracle has answered, so
    it also counts 'hmig recv --run-after' and the oracle's check."""
    s_tl = [r for r in (src or {}).get("timeline") or [] if r.get("event") is not None]
    d_tl = [r for r in (dst or {}).get("timeline") or [] if r.get("event") is not None]
    if not s_tl:
        return None
    ends = [s_tl[-1]["t_ms"]]
    if d_tl and dst.get("start_unix_ms") and src.get("start_unix_ms"):
        ends.append(d_tl[-1]["t_ms"] + dst["start_unix_ms"] - src["start_unix_ms"])
    return max(ends) - s_tl[0]["t_ms"]


def guest_slow_ms(src, dst):
    """How long the guest ran at under half its speed before the migration,
    after the destination resumed it: the destination's samples (one per
    sample_ms) from "resumed" to "complete" whose guest ops/s is below half
    the median of the source's samples.  Post-copy's cost to the guest,
    which the downtime does not show: a guest whose every touch is a pull
    can run at a few percent of its speed for seconds.  A paced workload
    catches up afterwards, so a mean of ops/s would hide it."""
    before = sorted(r["guest_ops_per_s"] for r in (src or {}).get("timeline") or []
                    if r.get("event") is None and r.get("guest_ops_per_s") is not None)
    d_tl = (dst or {}).get("timeline") or []
    t_res, t_done = _event_t(d_tl, "resumed"), _event_t(d_tl, "complete")
    if not before or t_res is None or t_done is None:
        return None
    half = before[len(before) // 2] / 2
    slow, last = 0.0, t_res
    for r in d_tl:
        if r.get("event") is not None or not t_res < r["t_ms"] <= t_done:
            continue
        if r.get("guest_ops_per_s") is not None and r["guest_ops_per_s"] < half:
            slow += r["t_ms"] - last
        last = r["t_ms"]
    return slow


def pass0_arrival_MBps(timeline):
    """Pass 0's MB/s as the destination received it: bulk bytes from its
    "receiving" row to its "pass 0" row (PASS_END arrived).  The source's own
    pass time ends when the last page is queued, megabytes of socket buffer
    before it arrives: at 1 Gbit/s that overstated a 64 MiB pass 0 by 8%."""
    start = end = None
    for r in timeline or []:
        if r.get("event") == "receiving" and start is None:
            start = r
        elif r.get("event") == "pass 0" and start is not None:
            end = r
            break
    if end is None or end["t_ms"] <= start["t_ms"]:
        return None
    return (end["bytes_bulk"] - start["bytes_bulk"]) / ((end["t_ms"] - start["t_ms"]) / 1e3) / MB


# The CSV's columns after the cell's own axes, in order.  Units are in the
# names; ratios are against the raw-TCP baseline measured through the same
# link in the same run (tcp_MBps, into fresh memory as a destination
# installs pages: tcp_fresh_MBps) and against the link's shaped rate.
COLUMNS = [
    "cell", "run", "link", "link_path", "link_rate_MBps", "tcp_MBps", "tcp_fresh_MBps",
    "mode", "workload", "mem", "vcpus", "knobs", "tls", "security",
    "send_exit", "recv_exit", "result", "integrity", "error",
    "migration_ms", "total_ms", "downtime_ms", "guest_blackout_ms",
    "downtime_pause_ms", "downtime_collect_ms", "downtime_send_ms", "downtime_load_ms",
    "downtime_commit_ms",
    "passes", "switchover", "stale_pages",
    "bytes_total", "bytes_per_guest", "bytes_precopy", "bytes_stopcopy", "bytes_push",
    "bytes_pull",
    "pass0_ms", "pass0_MBps", "pass0_vs_tcp", "pass0_vs_tcp_fresh", "pass0_vs_link",
    "faults", "fault_p50_us", "fault_p99_us", "fault_share_ge_1ms", "blocktime_ms",
    "pages_pulled", "pages_pushed", "resume_to_complete_ms", "guest_slow_ms", "postcopy_MBps",
    "postcopy_vs_link", "guest_ops_per_s_after",
]


def _ratio(a, b):
    return a / b if a is not None and b else None


def row(cell, run, link, src, dst, send_exit, recv_exit, error=None):
    """One CSV row for a run.  `link` is the runner's record of the path
    (name, path, rate_MBps, tcp_MBps, tcp_fresh_MBps).  A side that wrote
    no report is None: the row then says failed, with the error."""
    s, d = src or {}, dst or {}
    p = cell["params"]
    page = _get(s, "guest.page_size") or _get(d, "guest.page_size") or 4096
    pages = _get(s, "guest.pages") or _get(d, "guest.pages")
    passes = s.get("passes") or []
    p0 = passes[0] if passes else {}
    pass0_mbs = pass0_arrival_MBps(d.get("timeline"))
    t_res, t_done = _event_t(d.get("timeline"), "resumed"), _event_t(d.get("timeline"), "complete")
    r2c = t_done - t_res if t_res is not None and t_done is not None else None
    post_bytes = (_get(s, "bytes.push") or 0) + (_get(s, "bytes.pull") or 0)
    post_mbs = (post_bytes / (r2c / 1e3) / MB
                if r2c and post_bytes and p["mode"] != "precopy" else None)
    total = _get(s, "bytes.total")
    # A run is ok only if both reports say so and both processes agree.
    result, errors = run_result(src, dst)
    if error:
        errors.append(error)
    if send_exit != 0 or recv_exit != 0:
        errors.append(f"exit status send {send_exit}, recv {recv_exit}")
    if result == "ok" and errors:
        result = "failed"
    return {
        "cell": cell["name"], "run": run, "link": link["name"], "link_path": link["path"],
        "link_rate_MBps": link.get("rate_MBps"), "tcp_MBps": link.get("tcp_MBps"),
        "tcp_fresh_MBps": link.get("tcp_fresh_MBps"),
        "mode": p["mode"], "workload": p["workload"], "mem": p["mem"], "vcpus": p["vcpus"],
        "knobs": " ".join(f"{k}={v}" for k, v in sorted(knobs(p).items())),
        # What the config asked for, and what the source's report says ran.
        "tls": p["tls"],
        "security": _get(s, "security.cipher") or (
            "plaintext, " + str(_get(s, "security.integrity"))
            if _get(s, "security.encrypted") is False else None),
        "send_exit": send_exit, "recv_exit": recv_exit,
        "result": result, "integrity": d.get("integrity"), "error": "; ".join(errors) or None,
        "migration_ms": migration_ms(src, dst),
        "total_ms": s.get("total_ms"), "downtime_ms": s.get("downtime_ms"),
        "guest_blackout_ms": d.get("guest_blackout_ms"),
        **{k: s.get(k) for k in ("downtime_pause_ms", "downtime_collect_ms", "downtime_send_ms",
                                 "downtime_load_ms", "downtime_commit_ms")},
        "passes": len(passes), "switchover": _get(s, "switchover.reason"),
        "stale_pages": _get(s, "switchover.stale_pages"),
        "bytes_total": total,
        "bytes_per_guest": _ratio(total, pages * page if pages else None),
        "bytes_precopy": _get(s, "bytes.precopy"), "bytes_stopcopy": _get(s, "bytes.stopcopy"),
        "bytes_push": _get(s, "bytes.push"), "bytes_pull": _get(s, "bytes.pull"),
        "pass0_ms": p0.get("ms"), "pass0_MBps": pass0_mbs,
        "pass0_vs_tcp": _ratio(pass0_mbs, link.get("tcp_MBps")),
        "pass0_vs_tcp_fresh": _ratio(pass0_mbs, link.get("tcp_fresh_MBps")),
        "pass0_vs_link": _ratio(pass0_mbs, link.get("rate_MBps")),
        "faults": _get(d, "faults.count"), "fault_p50_us": _get(d, "faults.latency_us.p50"),
        "fault_p99_us": _get(d, "faults.latency_us.p99"),
        "fault_share_ge_1ms": _get(d, "faults.share_ge_1ms"),
        "blocktime_ms": _get(d, "faults.blocktime_ms"),
        "pages_pulled": _get(d, "pages.pulled"), "pages_pushed": _get(d, "pages.pushed"),
        "resume_to_complete_ms": r2c if p["mode"] != "precopy" else None,
        "guest_slow_ms": guest_slow_ms(src, dst),
        "postcopy_MBps": post_mbs, "postcopy_vs_link": _ratio(post_mbs, link.get("rate_MBps")),
        "guest_ops_per_s_after": d.get("guest_ops_per_s_after"),
    }


def write_csv(path, rows, axes):
    # An axis that is also a column (link, mem, mode) is written once.
    cols = [a for a in axes if a not in COLUMNS] + COLUMNS
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in cols})


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# The figures the summary gives per cell, with the format of one value.
SUMMARY_METRICS = [
    ("migration_ms", "{:.0f}"), ("downtime_ms", "{:.1f}"), ("guest_blackout_ms", "{:.1f}"),
    ("bytes_per_guest", "{:.2f}"), ("pass0_MBps", "{:.0f}"), ("pass0_vs_tcp", "{:.2f}"),
    ("pass0_vs_tcp_fresh", "{:.2f}"), ("pass0_vs_link", "{:.2f}"), ("faults", "{:.0f}"), ("fault_p50_us", "{:.0f}"),
    ("fault_p99_us", "{:.0f}"), ("resume_to_complete_ms", "{:.0f}"), ("guest_slow_ms", "{:.0f}"),
    ("postcopy_MBps", "{:.0f}"), ("guest_ops_per_s_after", "{:.0f}"),
]


def _num(v):
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def summarize(rows, axes):
    """One entry per cell, in first-seen order: its axis values, runs, runs
    ok, and for each metric (median, min, max) over the runs that ended ok
    with integrity ok (None when no such run has the figure).  A failed run
    counts in `runs` and not in the figures."""
    cells = {}
    for r in rows:
        cells.setdefault(r["cell"], []).append(r)
    out = []
    for name, rs in cells.items():
        good = [r for r in rs if r.get("result") == "ok" and r.get("integrity") == "ok"]
        entry = {"cell": name, "runs": len(rs), "ok": len(good),
                 "link": rs[0].get("link"), "link_path": rs[0].get("link_path"),
                 "tcp_MBps": _num(rs[0].get("tcp_MBps")),
                 "link_rate_MBps": _num(rs[0].get("link_rate_MBps"))}
        for a in axes:
            entry[a] = rs[0].get(a)
        for metric, _ in SUMMARY_METRICS:
            entry[metric] = median_range(r.get(metric) for r in good)
        out.append(entry)
    return out


def median_range(values):
    """(median, min, max) of the values that are numbers, or None."""
    vals = [v for v in map(_num, values) if v is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def fmt_range(stat, fmt):
    """'median (min–max)', or the one value when all runs agree, or '-'."""
    if stat is None:
        return "-"
    med, lo, hi = stat
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(lo)}–{fmt.format(hi)})"


def summary_markdown(summary, axes, metrics=None):
    """A markdown table: one row per cell, 'median (min–max)' per metric."""
    metrics = metrics or [m for m, _ in SUMMARY_METRICS
                          if any(e.get(m) is not None for e in summary)]
    fmts = dict(SUMMARY_METRICS)
    head = list(axes) + ["ok/runs"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [str(e.get(a)) for a in axes] + [f"{e['ok']}/{e['runs']}"]
        cells += [fmt_range(e.get(m), fmts[m]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary_csv(path, summary, axes):
    cols = ["cell"] + list(axes) + ["link_path", "runs", "ok"]
    for m, _ in SUMMARY_METRICS:
        cols += [f"{m}_median", f"{m}_min", f"{m}_max"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for e in summary:
            vals = [e["cell"]] + [e.get(a) for a in axes] + [e["link_path"], e["runs"], e["ok"]]
            for m, _ in SUMMARY_METRICS:
                vals += [_fmt(x) for x in (e[m] or (None, None, None))]
            w.writerow(vals)
