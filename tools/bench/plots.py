"""The matrix's plots, with matplotlib (Debian's python3-matplotlib).

For one run of each cell (the median one by migration time):
  CELL-timeline.png   MB/s per channel, pages present, guest ops/s; pass ends,
                      switchover and resume marked
  CELL-faults.png     fault-latency CDF (post-copy cells; from latency_hist_us)
  CELL-bytes.png      bytes per phase: each pre-copy pass, stop-and-copy, push, pull
For the matrix:
  compare-AXIS-REST.png  cells that differ only in AXIS overlaid: pages present
                      and guest ops/s over time, migration time and downtime (median, min-max)
  links.png           one panel per link, on its own scale: the shaped rate, raw
                      TCP, hmig's pass-0 MB/s

Every figure is small (about 800x300 pixels at 80 dpi): docs/img/ keeps some.
"""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import config  # noqa: E402
import results  # noqa: E402

DPI = 80
MiB = 1 << 20


def _finish(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _offset_s(src, dst):
    """Seconds from the source's t 0 to the destination's (their wall clocks
    at t_ms 0; one machine, so one clock)."""
    a, b = (src or {}).get("start_unix_ms"), (dst or {}).get("start_unix_ms")
    return (b - a) / 1e3 if a is not None and b is not None else 0.0


def _series(timeline, key, off=0.0, scale=1.0, samples_only=True):
    xs, ys = [], []
    for r in timeline or []:
        if samples_only and r.get("event") is not None:
            continue
        v = r.get(key)
        if v is not None:
            xs.append(r["t_ms"] / 1e3 + off)
            ys.append(v * scale)
    return xs, ys


def _events(src, dst):
    """(t_s, label, style) of the moments worth a line: pass ends, the
    switchover, the guest's resume on the destination, the end of push."""
    off = _offset_s(src, dst)
    out = []
    for r in (src or {}).get("timeline") or []:
        ev = r.get("event") or ""
        if ev.startswith("pass "):
            out.append((r["t_ms"] / 1e3, ev, dict(color="0.6", ls=":")))
        elif ev == "switchover":
            out.append((r["t_ms"] / 1e3, "switchover", dict(color="tab:red", ls="--")))
        elif ev == "pushed all":
            out.append((r["t_ms"] / 1e3, "pushed all", dict(color="tab:purple", ls=":")))
    for r in (dst or {}).get("timeline") or []:
        if r.get("event") == "resumed":
            out.append((r["t_ms"] / 1e3 + off, "resumed", dict(color="tab:green", ls="--")))
    return out


def _guest_ops(src, dst):
    """Guest ops/s on one clock: where the guest runs, source then destination."""
    off = _offset_s(src, dst)
    xs, ys = _series((src or {}).get("timeline"), "guest_ops_per_s")
    x2, y2 = _series((dst or {}).get("timeline"), "guest_ops_per_s", off)
    return xs + x2, ys + y2


def _present_pct(src, dst):
    pages = ((dst or src or {}).get("guest") or {}).get("pages") or 1
    return _series((dst or {}).get("timeline"), "pages_present", _offset_s(src, dst),
                   100.0 / pages, samples_only=False)


def timeline(src, dst, title, path):
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    off = _offset_s(src, dst)
    # What arrives: the destination's receive rates (the source's send rates
    # run ahead of them by what the socket buffers hold).
    for key, label, color in (("bulk_bps", "bulk", "tab:blue"),
                              ("urgent_bps", "urgent (pulls)", "tab:orange")):
        xs, ys = _series((dst or {}).get("timeline"), key, off, 1 / 1e6)
        if any(ys):
            ax1.plot(xs, ys, label=label, color=color, lw=1.2)
    ax1.set_ylabel("MB/s received")
    ax1b = ax1.twinx()
    xs, ys = _present_pct(src, dst)
    ax1b.plot(xs, ys, color="tab:green", lw=1, alpha=0.7, label="pages present %")
    ax1b.set_ylabel("pages present %")
    ax1b.set_ylim(0, 105)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1b.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=7)
    xs, ys = _guest_ops(src, dst)
    ax2.plot(xs, ys, color="tab:gray", lw=1.2)
    ax2.set_ylabel("guest ops/s")
    ax2.set_xlabel("s since the source's start")
    for ax in (ax1, ax2):
        for t, label, style in _events(src, dst):
            ax.axvline(t, lw=0.8, **style)
    for t, label, style in _events(src, dst):
        ax1.text(t, 1.0, label, transform=ax1.get_xaxis_transform(), rotation=90,
                 va="top", ha="right", fontsize=6, color=style["color"])
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax1.set_title(title, fontsize=9)
    _finish(fig, path)


def cdf_points(hist):
    """(upper edge in us, share of faults at or below it) from
    faults.latency_hist_us: bucket 0 counts faults under 1 us, bucket k
    those in [2^(k-1), 2^k) us (src/stats/report.c)."""
    total = sum(hist)
    if not total:
        return [], []
    xs, ys, acc = [], [], 0
    for k, n in enumerate(hist):
        acc += n
        xs.append(float(2 ** k))
        ys.append(acc / total)
    return xs, ys


def fault_cdf(curves, title, path):
    """curves: [(label, latency_hist_us)]."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    drawn = False
    for label, hist in curves:
        xs, ys = cdf_points(hist or [])
        if xs:
            ax.step(xs, ys, where="post", label=label, lw=1.2)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log", base=2)
    ax.set_xlabel("fault latency, us (upper edge of a power-of-two bucket)")
    ax.set_ylabel("share of faults")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    _finish(fig, path)
    return True


def phase_bytes(doc):
    """[(label, bytes)]: each pre-copy pass, stop-and-copy, push, pull.  A
    pass's bytes are its pages at the page size (zero pages travel as a pfn,
    so this overstates a pass that had some)."""
    page = (doc.get("guest") or {}).get("page_size", 4096)
    out = [(f"pass {p['pass']}", p["pages_sent"] * page) for p in doc.get("passes") or []]
    b = doc.get("bytes") or {}
    for key, label in (("stopcopy", "stop-copy"), ("push", "push"), ("pull", "pull")):
        if b.get(key):
            out.append((label, b[key]))
    return out


def bytes_phases(doc, title, path):
    parts = phase_bytes(doc)
    if not parts:
        return False
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [p[0] for p in parts]
    vals = [p[1] / MiB for p in parts]
    colors = ["tab:blue" if lab.startswith("pass") else
              {"stop-copy": "tab:red", "push": "tab:purple", "pull": "tab:orange"}[lab]
              for lab in labels]
    ax.bar(labels, vals, color=colors)
    guest = ((doc.get("guest") or {}).get("pages") or 0) * (doc.get("guest") or {}).get(
        "page_size", 4096) / MiB
    if guest:
        ax.axhline(guest, color="0.4", ls="--", lw=0.8)
        ax.text(len(vals) - 0.5, guest, "guest size", ha="right", va="bottom", fontsize=7)
    ax.set_ylabel("MiB")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    _finish(fig, path)
    return True


def _median_run(rows):
    """The run whose total time is the median of its cell's ok runs (else the
    first run): the one drawn for the cell."""
    ok = [r for r in rows if r.get("result") == "ok" and r.get("migration_ms") not in (None, "")]
    if not ok:
        return rows[0]
    ok.sort(key=lambda r: float(r["migration_ms"]))
    return ok[(len(ok) - 1) // 2]


def _run_docs(out, row):
    d = os.path.join(out, "runs", row["cell"], f"r{row['run']}")
    return (results.load_report(os.path.join(d, "source.json")),
            results.load_report(os.path.join(d, "destination.json")))


def _cell_title(row, axes):
    return (", ".join(f"{a}={row.get(a)}" for a in axes if row.get(a) not in (None, ""))
            + f" (run {row['run']})")


def compare(out, axis, group, axes, summary, path):
    """Overlays the cells of `group` (rows, one median run per cell)."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12, 3.4),
                                        gridspec_kw={"width_ratios": [2, 2, 1.4]})
    labels, tot, down = [], [], []
    for row in group:
        src, dst = _run_docs(out, row)
        label = str(row.get(axis))
        if src is None and dst is None:
            continue
        # t 0: the migration's start on the source (its SETUP row).
        xs, ys = _present_pct(src, dst)
        line, = ax1.plot(xs, ys, lw=1.2, label=label)
        gx, gy = _guest_ops(src, dst)
        ax2.plot(gx, gy, lw=1, color=line.get_color(), label=label)
        for t, lab, style in _events(src, dst):
            if lab in ("switchover", "resumed"):
                ax1.axvline(t, color=line.get_color(), lw=0.6, ls=style["ls"])
        s = summary.get(row["cell"]) or {}
        labels.append(label)
        tot.append(s.get("migration_ms"))
        down.append(s.get("downtime_ms"))
    ax1.set_ylabel("pages present %")
    ax1.set_xlabel("s")
    ax1.set_ylim(0, 105)
    ax1.legend(fontsize=7)
    ax2.set_ylabel("guest ops/s")
    ax2.set_xlabel("s")
    ax2.set_ylim(bottom=0)
    _bars(ax3, labels, [("migration s", tot, 1e-3), ("downtime ms", down, 1)])
    fixed = {a: group[0].get(a) for a in axes if a != axis and group[0].get(a) not in (None, "")}
    fig.suptitle(f"{axis}: " + ", ".join(f"{k}={v}" for k, v in fixed.items()), fontsize=9)
    _finish(fig, path)


def _bars(ax, labels, series):
    """Grouped bars of (name, [(median, min, max)], scale) with min-max whiskers."""
    width = 0.8 / max(1, len(series))
    for i, (name, stats, scale) in enumerate(series):
        xs = [j + i * width for j in range(len(labels))]
        med = [s[0] * scale if s else 0 for s in stats]
        err = [[(s[0] - s[1]) * scale if s else 0 for s in stats],
               [(s[2] - s[0]) * scale if s else 0 for s in stats]]
        ax.bar(xs, med, width, yerr=err, capsize=2, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7, rotation=20)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("median, min-max", fontsize=8)


def links_plot(summary, links, path):
    """Per link, on its own scale: its shaped rate, raw TCP (reused buffer
    and fresh memory), and the best cell median of hmig's pass-0 MB/s, each
    bar labelled with its value.  Post-copy MB/s is left out: over a phase
    of tens of ms, the bytes already in socket buffers and the tbf bucket
    put it above the link's rate."""
    names = list(links)
    if not names:
        return False
    fig, axs = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    labels = ["shaped rate", "raw TCP", "TCP, fresh mem", "hmig pass 0"]
    colors = ["0.5", "tab:orange", "tab:green", "tab:red"]
    for ax, n in zip(axs[0], names):
        vals = [links[n].get("rate_MBps"), links[n].get("tcp_MBps"),
                links[n].get("tcp_fresh_MBps")]
        meds = [e["pass0_MBps"][0] for e in summary.values()
                if e.get("link") == n and e.get("pass0_MBps")]
        vals.append(max(meds) if meds else None)
        ax.bar(labels, [v or 0 for v in vals], color=colors)
        for i, v in enumerate(vals):
            ax.text(i, v or 0, "-" if v is None else f"{v:.0f}", ha="center", va="bottom",
                    fontsize=7)
        ax.set_title(n, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
        ax.set_ylabel("MB/s")
    fig.suptitle("raw TCP and hmig through the same link, same run "
                 "(hmig: best cell median)", fontsize=9)
    _finish(fig, path)
    return True


def comparison_groups(rows, axis, axes):
    """Groups of median runs, one per cell, of cells equal in every axis but
    `axis`; only groups of two or more."""
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r)
    groups = {}
    for cell_rows in by_cell.values():
        rep = _median_run(cell_rows)
        key = tuple((a, rep.get(a)) for a in axes if a != axis)
        groups.setdefault(key, []).append(rep)
    return {k: g for k, g in groups.items() if len(g) > 1}


def plot_matrix(out):
    """Draws every plot of a matrix's output directory; returns how many."""
    with open(os.path.join(out, "matrix.json")) as f:
        meta = json.load(f)
    rows = results.read_csv(os.path.join(out, "runs.csv"))
    axes = meta["axes"]
    compare_axes = [a for a in ("scenario", "mode", "push") if a in axes]
    try:
        matrix = config.load(meta["config"])
        compare_axes = matrix["compare"] or compare_axes
    except (OSError, config.ConfigError):
        pass
    summary = {e["cell"]: e for e in results.summarize(rows, axes)}
    pdir = os.path.join(out, "plots")
    os.makedirs(pdir, exist_ok=True)
    n = 0
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r)
    for cell, cell_rows in by_cell.items():
        row = _median_run(cell_rows)
        src, dst = _run_docs(out, row)
        if src is None and dst is None:
            continue
        title = _cell_title(row, axes)
        timeline(src, dst, title, os.path.join(pdir, f"{cell}-timeline.png"))
        n += 1
        # Faults are the destination's to measure, passes and bytes the source's.
        if fault_cdf([(cell, ((dst or {}).get("faults") or {}).get("latency_hist_us"))], title,
                     os.path.join(pdir, f"{cell}-faults.png")):
            n += 1
        if src and bytes_phases(src, title, os.path.join(pdir, f"{cell}-bytes.png")):
            n += 1
    for axis in compare_axes:
        for key, group in comparison_groups(rows, axis, axes).items():
            # Axes a cell's part does not have are empty in runs.csv: no
            # part of its name.
            rest = "_".join(config.slug(v) for _, v in key if v not in (None, "")) or "all"
            compare(out, axis, group, axes, summary,
                    os.path.join(pdir, f"compare-{axis}-{rest}.png"))
            n += 1
            curves = []
            for row in group:
                src, dst = _run_docs(out, row)
                hist = ((dst or {}).get("faults") or {}).get("latency_hist_us")
                if hist:
                    curves.append((str(row.get(axis)), hist))
            if len(curves) > 1 and fault_cdf(curves, f"fault latency by {axis}: {rest}",
                                             os.path.join(pdir, f"compare-{axis}-{rest}-faults.png")):
                n += 1
    if links_plot(summary, meta.get("links") or {}, os.path.join(pdir, "links.png")):
        n += 1
    return n
