#!/usr/bin/python3
"""Issue 11's targets for the hybrid, checked against a matrix's runs.csv
(tools/bench/hybrid.toml: modes x workloads x push orders):

  - hybrid bytes <= 1.3x the guest, at every dirty rate;
  - downtime p50 <= 2 ms for postcopy and hybrid;
  - an idle or low-rate guest (idle, or 20k writes/s and less): hybrid
    finishes as pre-copy, with <= 1.05x the bytes and <= 2 ms of downtime;
  - hybrid's time <= 1.1x pure post-copy's (migration_ms, medians).

  targets.py DIR      prints one markdown table per target, each cell met or
                      missed, with the baselines from the same matrix

Medians (min-max) over each cell's runs that ended ok with integrity ok.
Pure functions of runs.csv rows, unit-tested in test_bench.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402

BYTES_MAX = 1.3
DOWNTIME_MAX_MS = 2.0
LOW_RATE_BYTES_MAX = 1.05
LOW_RATE_MAX = 20000
TIME_MAX = 1.1


def _stat(rows, key):
    return results.median_range(r.get(key) for r in rows)


def low_rate(workload):
    """Whether a workload spec ("idle", "uniform:rate=20000") is idle or low-rate."""
    name, _, params = workload.partition(":")
    if name == "idle":
        return True
    rate = dict(p.split("=", 1) for p in params.split(",") if "=" in p).get("rate", "0")
    return 0 < float(rate) <= LOW_RATE_MAX


def finished_as(rows):
    """How many of a hybrid cell's runs ended by stop-and-copy (no byte
    pushed or pulled): 'pre-copy 3/3', 'post-copy 3/3', or a mix."""
    pre = sum(1 for r in rows
              if not float(r.get("bytes_push") or 0) and not float(r.get("bytes_pull") or 0))
    if pre == len(rows):
        return f"pre-copy {pre}/{len(rows)}"
    if pre == 0:
        return f"post-copy {len(rows)}/{len(rows)}"
    return f"pre-copy {pre}/{len(rows)}, post-copy {len(rows) - pre}/{len(rows)}"


# What makes two cells comparable: all but the mode.  link, mem and the
# knobs other than push are shown only when the matrix has more than one.
_KEY = ("workload", "push", "link", "mem", "knobs")


def _key(r):
    other = " ".join(k for k in (r.get("knobs") or "").split() if not k.startswith("push="))
    return tuple(other if k == "knobs" else r.get(k) or "" for k in _KEY)


def _cells(rows):
    """{(mode, _key(run)): the runs that ended ok}, in first-seen order."""
    cells = {}
    for r in rows:
        key = (r["mode"], _key(r))
        cells.setdefault(key, [])
        if r.get("result") == "ok" and r.get("integrity") == "ok":
            cells[key].append(r)
    return cells


def _verdict(value, limit):
    if value is None:
        return "no figure"
    return "met" if value <= limit else "**missed**"


def _table(head, lines):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def tables(rows):
    """The four tables, as markdown."""
    cells = _cells(rows)
    shown = [i for i, k in enumerate(_KEY)
             if k in ("workload", "push") or len({key[i] for _, key in cells}) > 1]
    names = [_KEY[i] for i in shown]

    def label(key):
        return [key[i] for i in shown]

    # Pre-copy has no push order: its baseline is any of its cells that
    # matches in all but the push.
    pre = {key[:1] + key[2:]: rs for (m, key), rs in cells.items() if m == "precopy"}
    pairs = [(key, rs, cells.get(("postcopy", key), []), pre.get(key[:1] + key[2:], []))
             for (m, key), rs in cells.items() if m == "hybrid"]
    f = results.fmt_range

    def med(rs, key):
        s = _stat(rs, key)
        return s[0] if s else None

    out = [f"Hybrid bytes <= {BYTES_MAX}x the guest (bytes on both channels / guest size):\n",
           _table(names + ["precopy", "postcopy", "hybrid", "hybrid finished as", "target"],
                  [label(k) + [f(_stat(pr, "bytes_per_guest"), "{:.2f}"),
                               f(_stat(po, "bytes_per_guest"), "{:.2f}"),
                               f(_stat(hy, "bytes_per_guest"), "{:.2f}"),
                               finished_as(hy) if hy else "-",
                               _verdict(med(hy, "bytes_per_guest"), BYTES_MAX)]
                   for k, hy, po, pr in pairs])]
    out += [f"\nDowntime p50 <= {DOWNTIME_MAX_MS:g} ms for postcopy and hybrid (ms):\n",
            _table(names + ["precopy", "postcopy", "target", "hybrid", "target"],
                   [label(k) + [f(_stat(pr, "downtime_ms"), "{:.1f}"),
                                f(_stat(po, "downtime_ms"), "{:.1f}"),
                                _verdict(med(po, "downtime_ms"), DOWNTIME_MAX_MS),
                                f(_stat(hy, "downtime_ms"), "{:.1f}"),
                                _verdict(med(hy, "downtime_ms"), DOWNTIME_MAX_MS)]
                    for k, hy, po, pr in pairs])]
    lines = []
    for k, hy, _, _ in pairs:
        if not low_rate(k[0]):
            continue
        met = (hy and finished_as(hy).startswith(f"pre-copy {len(hy)}/")
               and med(hy, "bytes_per_guest") <= LOW_RATE_BYTES_MAX
               and med(hy, "downtime_ms") <= DOWNTIME_MAX_MS)
        lines.append(label(k) + [finished_as(hy) if hy else "-",
                                 f(_stat(hy, "bytes_per_guest"), "{:.2f}"),
                                 f(_stat(hy, "downtime_ms"), "{:.1f}"),
                                 "no figure" if not hy else "met" if met else "**missed**"])
    out += [f"\nIdle and low-rate guests: hybrid finishes as pre-copy with <= "
            f"{LOW_RATE_BYTES_MAX}x and <= {DOWNTIME_MAX_MS:g} ms:\n",
            _table(names + ["finished as", "bytes/guest", "downtime ms", "target"], lines)]
    lines = []
    for k, hy, po, pr in pairs:
        h, o = med(hy, "migration_ms"), med(po, "migration_ms")
        ratio = h / o if h is not None and o else None
        lines.append(label(k) + [f(_stat(pr, "migration_ms"), "{:.0f}"),
                                 f(_stat(po, "migration_ms"), "{:.0f}"),
                                 f(_stat(hy, "migration_ms"), "{:.0f}"),
                                 "-" if ratio is None else f"{ratio:.2f}",
                                 _verdict(ratio, TIME_MAX)])
    out += [f"\nHybrid's time <= {TIME_MAX}x pure post-copy's (migration ms; the ratio of the "
            "medians):\n",
            _table(names + ["precopy", "postcopy", "hybrid", "hybrid / postcopy", "target"],
                   lines)]
    return "".join(out)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    print(tables(results.read_csv(os.path.join(argv[1], "runs.csv"))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
