#!/usr/bin/python3
"""hmig's benchmark matrix: modes x workloads x guest sizes x dirty rates x
links x push orders x any knob, each cell run R times as real 'hmig recv' and
'hmig send' processes, on real links.

  matrix.py run CONFIG [--out DIR] [--hmig PATH] [--no-plots]
  matrix.py plot DIR        draw the plots of a finished (or stopped) matrix again
  matrix.py reread DIR      derive runs.csv and the summary again from the stored
                            reports (after a change to results.py), then plot

Writes into DIR:
  matrix.json          the cells, the links as measured, the host, the command
  runs.csv             one row per run, failed runs included (result, integrity, error)
  summary.csv, .md     per cell: runs, runs ok, and median (min-max) of each figure
  runs/CELL/rN/        source.json, destination.json, merged.json, send.log, recv.log
  plots/               a timeline, a fault-latency CDF and bytes per phase for one
                       run of each cell (its median by migration time), comparisons
                       that overlay cells, and link throughput against raw TCP

Exit status: 0 when every run ended ok with integrity ok, 1 when one did not
(everything is still written), 2 for bad usage or a bad config.

It is the orchestration only, as QEMU's tests/migration/guestperf is: each
migration is two hmig processes; the links are network namespaces, a veth
pair and tc (link.py); the baseline is raw TCP through the same link
(tcpbase.py).  docs/benchmarks.md has the figures and how to read them.
"""
import argparse
import json
import mmap
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import config  # noqa: E402
import link as linkmod  # noqa: E402
import results  # noqa: E402

# MADV_POPULATE_WRITE (Linux 5.14): Python 3.11's mmap module does not name it.
MADV_POPULATE_WRITE = 23
BASELINE_SECONDS = 2.0


def _on_term(signum, frame):
    # SIGTERM and SIGHUP unwind like Ctrl-C, so every 'finally' runs: the
    # children are stopped and the namespaces removed.
    raise KeyboardInterrupt(f"signal {signum}")


def warm_memory(nbytes):
    """Touches and frees nbytes: this VM backs memory lazily, and the first
    touch costs ~10x a warm one; without this the first run of a matrix pays
    it and the others do not (as baseline_warm_memory in tools/hmig)."""
    avail = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    nbytes = min(nbytes, avail // 2)
    if nbytes < mmap.PAGESIZE:
        return
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(MADV_POPULATE_WRITE)
    except OSError:
        for off in range(0, nbytes, mmap.PAGESIZE):
            m[off] = 1
    m.close()


def _spawn(prefix, argv, log, **kw):
    return subprocess.Popen(prefix + argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, **kw)


def _stop(proc, grace=10):
    """Stops a child we started: SIGINT (hmig cancels cleanly), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_until_eof(fd, timeout):
    data, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def tcp_baseline(prefix_src, prefix_dst, host):
    """Raw TCP MB/s through the link, into a reused buffer and into fresh
    memory (tcpbase.py), or an error string."""
    tool = [sys.executable, os.path.join(HERE, "tcpbase.py")]
    sink = subprocess.Popen(prefix_dst + tool + ["sink", host], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = sink.stdout.readline().strip()
        if not port.isdigit():
            return f"tcp baseline: the sink did not start: {sink.stderr.read().strip()}"
        blast = subprocess.run(prefix_src + tool + ["blast", f"{host}:{port}",
                                                    str(BASELINE_SECONDS)],
                               capture_output=True, text=True, timeout=60)
        if blast.returncode:
            return f"tcp baseline: the blast failed: {blast.stderr.strip().splitlines()[-1:]}"
        out, _ = sink.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        return f"tcp baseline failed: {e}"
    finally:
        _stop(sink, grace=2)


def run_one(hmig, cell, rep, link, ns, out, psk):
    """One migration: 'hmig recv' in the destination's namespace, 'hmig send'
    in the source's.  Returns its CSV row; a failure is a row, not an
    exception."""
    d = os.path.join(out, "runs", cell["name"], f"r{rep}")
    os.makedirs(d, exist_ok=True)
    p = cell["params"]
    src_json, dst_json = os.path.join(d, "source.json"), os.path.join(d, "destination.json")
    for f in (src_json, dst_json):
        if os.path.exists(f):
            os.unlink(f)
    pre_s = ns.exec_prefix("src") if link["ns"] else []
    pre_d = ns.exec_prefix("dst") if link["ns"] else []
    host = linkmod.DST_ADDR if link["ns"] else "127.0.0.1"
    recv = send = None
    note, send_rc, recv_rc = None, None, None
    with open(os.path.join(d, "recv.log"), "w") as rlog, \
            open(os.path.join(d, "send.log"), "w") as slog:
        r_fd, w_fd = os.pipe()
        try:
            recv = _spawn(pre_d, [hmig] + config.recv_args(p, f"{host}:0", dst_json, w_fd, psk),
                          rlog, pass_fds=(w_fd,))
            os.close(w_fd)
            w_fd = None
            addr = _read_until_eof(r_fd, 30)
            if not addr:
                note = "hmig recv did not report its address (recv.log)"
            else:
                send = _spawn(pre_s, [hmig] + config.send_args(p, addr, src_json, psk), slog)
                try:
                    send_rc = send.wait(p["timeout"])
                except subprocess.TimeoutExpired:
                    note = f"killed after the {p['timeout']} s timeout"
                    _stop(send)
                    send_rc = send.returncode
            try:
                recv_rc = recv.wait(30 if note is None else 5)
            except subprocess.TimeoutExpired:
                note = note or "hmig recv did not exit 30 s after hmig send"
                _stop(recv)
                recv_rc = recv.returncode
        finally:
            _stop(send)
            _stop(recv)
            os.close(r_fd)
            if w_fd is not None:
                os.close(w_fd)
    src, dst = results.load_report(src_json), results.load_report(dst_json)
    if src and dst:
        # The merge is hmig's own (docs/report.md): one rule, one place.
        m = subprocess.run([hmig, "report", "--json", src_json, dst_json],
                           capture_output=True, text=True)
        if m.returncode == 0:
            with open(os.path.join(d, "merged.json"), "w") as f:
                f.write(m.stdout)
        else:
            note = "; ".join(filter(None, [note, f"hmig report: {m.stderr.strip()}"]))
    row = results.row(cell, rep, link, src, dst, send_rc, recv_rc, note)
    row.update(cell["axes"])
    return row


def _link_plan(matrix):
    """The links in the order the cells name them, each with its cells."""
    plan = {}
    for c in matrix["cells"]:
        plan.setdefault(c["params"]["link"], []).append(c)
    return plan


def _describe(row):
    if row["result"] != "ok" or row["integrity"] != "ok":
        return f"FAILED ({row['result']}, integrity {row['integrity']}): {row['error']}"

    def f(v, fmt):
        return "-" if v is None else fmt.format(v)
    return (f"ok: migration {f(row['migration_ms'], '{:.0f}')} ms, downtime "
            f"{f(row['downtime_ms'], '{:.1f}')} ms, pass 0 {f(row['pass0_MBps'], '{:.0f}')} MB/s"
            f" ({f(row['pass0_vs_tcp'], '{:.2f}')}x raw TCP), faults {row['faults']}")


def run(args):
    matrix = config.load(args.config)
    out = args.out or os.path.join(HERE, "..", "..", "build", "bench",
                                   f"{matrix['name']}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    hmig = os.path.abspath(args.hmig)
    if not os.access(hmig, os.X_OK):
        print(f"matrix: {hmig} is not an executable hmig; build it first (tools/run build) "
              f"or pass --hmig", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    # TLS with a pre-shared key is what a user runs: one key for this
    # matrix, made as a user makes one, in a directory only we can read
    # (mkdtemp: mode 0700) and removed when the matrix ends.
    keydir = tempfile.mkdtemp(prefix="hmig-bench-key-")
    try:
        psk = os.path.join(keydir, "mig.psk")
        if any(c["params"]["tls"] == "psk" for c in matrix["cells"]):
            k = subprocess.run([hmig, "keygen", "--psk", psk], capture_output=True, text=True)
            if k.returncode:
                print(f"matrix: 'hmig keygen --psk' failed: {k.stderr.strip()}",
                      file=sys.stderr)
                return 2
        return _run_matrix(args, matrix, out, hmig, psk)
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


def _run_matrix(args, matrix, out, hmig, psk):
    stale = linkmod.sweep_stale()
    if stale:
        print(f"matrix: removed namespaces a stopped run left: {' '.join(stale)}")

    plan = _link_plan(matrix)
    need_ns = any(matrix["links"][n].get("kind", "veth") == "veth" for n in plan)
    why_not = linkmod.netns_unavailable() if need_ns else None
    ns = None
    rows, links = [], {}
    total = len(matrix["cells"]) * matrix["repeat"]
    meta = {"name": matrix["name"], "config": os.path.abspath(args.config),
            "command": " ".join(sys.argv), "hmig": hmig, "host": _host(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "axes": matrix["axes"],
            "repeat": matrix["repeat"], "cells": matrix["cells"], "links": links,
            "tls": sorted({c["params"]["tls"] for c in matrix["cells"]})}
    interrupted = False
    try:
        if need_ns and why_not is None:
            try:
                ns = linkmod.Netns()
                ns.open()
            except (subprocess.CalledProcessError, OSError) as e:
                why_not = f"cannot make network namespaces: {getattr(e, 'stderr', '') or e}".strip()
        if why_not:
            print(f"matrix: links fall back to loopback: {why_not}")
        n = 0
        for name, cells in plan.items():
            spec = matrix["links"][name]
            use_ns = spec.get("kind", "veth") == "veth" and ns is not None
            rate = spec.get("rate")
            if use_ns:
                path = ns.shape(spec)
                pre_s, pre_d, host = ns.exec_prefix("src"), ns.exec_prefix("dst"), linkmod.DST_ADDR
            else:
                path = "loopback 127.0.0.1, this namespace, unshaped"
                if spec.get("kind", "veth") == "veth":
                    path += f" (fallback from {name}: {why_not})"
                    rate = None
                pre_s, pre_d, host = [], [], "127.0.0.1"
            warm_memory(4 * max(config.mem_bytes(c["params"]["mem"]) for c in cells))
            base = tcp_baseline(pre_s, pre_d, host)
            rec = {"name": name, "path": path, "ns": use_ns,
                   "rate_MBps": config.rate_bits(rate) / 8 / 1e6 if rate else None}
            if isinstance(base, dict):
                rec.update(base)
            else:
                rec["baseline_error"] = base
            links[name] = rec
            print(f"link {name}: {path}; raw TCP {_mbs(rec.get('tcp_MBps'))} MB/s, into fresh "
                  f"memory {_mbs(rec.get('tcp_fresh_MBps'))} MB/s"
                  + (f", shaped rate {rec['rate_MBps']:.0f} MB/s" if rec["rate_MBps"] else ""),
                  flush=True)
            # Repeats interleave (cell A, B, A, B): a drift of the machine over
            # the matrix then spreads over every cell instead of biasing one.
            for rep in range(matrix["repeat"]):
                for cell in cells:
                    n += 1
                    row = run_one(hmig, cell, rep, rec, ns, out, psk)
                    rows.append(row)
                    print(f"[{n}/{total}] {cell['name']} r{rep}: {_describe(row)}", flush=True)
                    results.write_csv(os.path.join(out, "runs.csv"), rows, matrix["axes"])
    except KeyboardInterrupt:
        interrupted = True
        print("matrix: interrupted; writing what ran", file=sys.stderr)
    finally:
        if ns is not None:
            ns.close()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["interrupted"] = interrupted
    with open(os.path.join(out, "matrix.json"), "w") as f:
        json.dump(meta, f, indent=1)
    results.write_csv(os.path.join(out, "runs.csv"), rows, matrix["axes"])
    write_summary(out, rows, matrix["axes"])
    if not args.no_plots and rows:
        draw(out)
    bad = sum(1 for r in rows if r["result"] != "ok" or r["integrity"] != "ok")
    print(f"matrix: {len(rows)} runs, {len(rows) - bad} ok, {bad} failed; results in {out}")
    return 1 if bad or interrupted else 0


def _mbs(v):
    return "-" if v is None else f"{v:.0f}"


def _host():
    return {"kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "commit": _commit()}


def _commit():
    """The source tree's commit, "+dirty" when it has changes; None outside git."""
    try:
        git = ["git", "-C", HERE]
        head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def write_summary(out, rows, axes):
    summary = results.summarize(rows, axes)
    results.write_summary_csv(os.path.join(out, "summary.csv"), summary, axes)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(results.summary_markdown(summary, axes))


def _int(v):
    return int(v) if v not in (None, "") else None


def reread(out):
    """Rows again from each run's stored reports.  What only the runner saw
    (exit codes, a timeout) comes from the old runs.csv."""
    with open(os.path.join(out, "matrix.json")) as f:
        meta = json.load(f)
    cells = {c["name"]: c for c in meta["cells"]}
    rows = []
    for old in results.read_csv(os.path.join(out, "runs.csv")):
        cell = cells[old["cell"]]
        d = os.path.join(out, "runs", old["cell"], f"r{old['run']}")
        notes = [e for e in (old.get("error") or "").split("; ")
                 if e.startswith(("killed", "hmig recv did not"))]
        row = results.row(cell, int(old["run"]), meta["links"][cell["params"]["link"]],
                          results.load_report(os.path.join(d, "source.json")),
                          results.load_report(os.path.join(d, "destination.json")),
                          _int(old["send_exit"]), _int(old["recv_exit"]),
                          "; ".join(notes) or None)
        row.update(cell["axes"])
        rows.append(row)
    results.write_csv(os.path.join(out, "runs.csv"), rows, meta["axes"])
    write_summary(out, rows, meta["axes"])
    return rows


def draw(out):
    try:
        import plots
    except ImportError as e:
        print(f"matrix: no plots: {e}; install python3-matplotlib (tools/run does)",
              file=sys.stderr)
        return False
    n = plots.plot_matrix(out)
    print(f"matrix: {n} plots in {os.path.join(out, 'plots')}")
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run a matrix")
    r.add_argument("config", help="the matrix's TOML file (tools/bench/quick.toml)")
    r.add_argument("--out", help="output directory (default build/bench/NAME-TIME)")
    r.add_argument("--hmig", default=os.path.join(HERE, "..", "..", "build", "tools", "hmig",
                                                  "hmig"), help="the hmig binary")
    r.add_argument("--no-plots", action="store_true", help="skip the plots")
    p = sub.add_parser("plot", help="draw the plots of a matrix's output directory")
    p.add_argument("out")
    p = sub.add_parser("reread", help="derive runs.csv and the summary again from the "
                       "stored reports, then plot")
    p.add_argument("out")
    args = ap.parse_args(argv)
    try:
        if args.verb == "run":
            return run(args)
        if args.verb == "reread":
            rows = reread(args.out)
            print(f"matrix: {len(rows)} runs reread into {os.path.join(args.out, 'runs.csv')}")
        return 0 if draw(args.out) else 1
    except config.ConfigError as e:
        print(f"matrix: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
