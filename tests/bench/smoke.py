#!/usr/bin/python3
"""A tiny matrix, end to end: one post-copy cell of a 64 MiB guest on
loopback, and the same cell on a 1 Gbit/s tbf-shaped veth pair between two
network namespaces when this process may make them (root, iproute2), both
over TLS with the runner's pre-shared key; and the loopback cell once more
in plaintext (tls = "insecure").

Checks that each run wrote its three reports, that runs.csv has one row per
run with integrity ok, that the summary and the plots were written, and that
no namespace is left behind.  No timed assertion: the figures are whatever
this machine gives.

  tests/bench/smoke.py HMIG TOOLS_BENCH_DIR
"""
import csv
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, sys.argv[2])
import link  # noqa: E402


def fail(msg):
    print(f"bench smoke: FAIL: {msg}")
    sys.exit(1)


def main():
    hmig, bench = sys.argv[1], sys.argv[2]
    why_not = link.netns_unavailable()
    links = ["lo"] if why_not else ["lo", "1gbit"]
    if why_not:
        print(f"bench smoke: the shaped-link cell is skipped: {why_not}; loopback only")
    with tempfile.TemporaryDirectory(prefix="hmig-bench-smoke-") as d:
        cfg = os.path.join(d, "smoke.toml")
        with open(cfg, "w") as f:
            f.write(f"""name = "smoke"
[base]
mem = "64M"
workload = "uniform"
rate = 20000
warmup = 0.5
run_after = 0.5
timeout = 120
[[part]]
axes.mode = ["postcopy"]
axes.link = {json.dumps(links)}
[[part]]
axes.mode = ["postcopy"]
axes.tls = ["insecure"]
axes.link = ["lo"]
""")
        out = os.path.join(d, "out")
        p = subprocess.run([sys.executable, os.path.join(bench, "matrix.py"), "run", cfg,
                            "--out", out, "--hmig", hmig], capture_output=True, text=True)
        print(p.stdout, p.stderr, sep="")
        if p.returncode != 0:
            fail(f"matrix.py exited {p.returncode}")
        with open(os.path.join(out, "runs.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) != len(links) + 1:
            fail(f"runs.csv has {len(rows)} rows, expected {len(links) + 1}")
        for r in rows:
            if (r["result"], r["integrity"]) != ("ok", "ok"):
                fail(f"run {r['cell']}: result {r['result']}, integrity {r['integrity']}: "
                     f"{r['error']}")
            if not r["link_path"]:
                fail(f"run {r['cell']} does not record its path")
            # TLS with the runner's key by default; plaintext when asked.
            want = "plaintext" if r["tls"] == "insecure" else "TLS1.3"
            if not r["security"].startswith(want):
                fail(f"run {r['cell']}: security {r['security']!r}, expected {want}")
            for rep in ("source.json", "destination.json", "merged.json"):
                path = os.path.join(out, "runs", r["cell"], "r0", rep)
                with open(path) as f:
                    doc = json.load(f)
                if doc.get("result") != "ok":
                    fail(f"{path}: result {doc.get('result')}")
        shaped = [r for r in rows if r["link"] == "1gbit"]
        if shaped and "tbf 1gbit" not in shaped[0]["link_path"]:
            fail(f"the shaped run's path is {shaped[0]['link_path']!r}")
        for name in ("summary.csv", "summary.md", "matrix.json"):
            if not os.path.getsize(os.path.join(out, name)):
                fail(f"{name} is empty")
        plots = os.listdir(os.path.join(out, "plots"))
        for r in rows:
            for kind in ("timeline", "bytes"):
                if f"{r['cell']}-{kind}.png" not in plots:
                    fail(f"no {kind} plot for {r['cell']} (plots: {plots})")
        if "links.png" not in plots:
            fail("no links.png")
    made = set(re.findall(rf"{link.PREFIX}\d+[sd]", " ".join(r["link_path"] for r in rows)))
    have = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                              text=True).stdout.split()) if made else set()
    left = sorted(made & have)
    if left:
        fail(f"namespaces left behind: {left}")
    print(f"bench smoke: ok ({len(rows)} runs: {', '.join(r['link_path'] for r in rows)})")


if __name__ == "__main__":
    main()
