#!/usr/bin/python3
"""Unit tests of tools/bench: the config, a run's result, the CSV row, the
summary and issue 11's targets.  Pure functions on made-up reports;
nothing runs hmig.

  tests/bench/test_bench.py [TOOLS_BENCH_DIR]
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = (sys.argv.pop(1) if len(sys.argv) > 1
         else os.path.join(HERE, "..", "..", "tools", "bench"))
sys.path.insert(0, BENCH)

import config  # noqa: E402
import results  # noqa: E402
import targets  # noqa: E402


def parse(text):
    import tomllib
    return config.parse(tomllib.loads(text))


class Config(unittest.TestCase):
    def test_product_names_and_params(self):
        m = parse("""
repeat = 2
[base]
mem = "64M"
workload = "zipf"
rate = 1000
[axes]
scenario = ["pre", "post-copy-iters-0"]
link = ["lo", "1gbit"]
[scenarios]
pre = { mode = "precopy" }
"post-copy-iters-0" = { mode = "postcopy", precopy_passes = 0 }
""")
        self.assertEqual(m["repeat"], 2)
        self.assertEqual(m["axes"], ["scenario", "link"])
        self.assertEqual([c["name"] for c in m["cells"]],
                         ["pre_lo", "pre_1gbit", "post-copy-iters-0_lo", "post-copy-iters-0_1gbit"])
        p = m["cells"][3]["params"]
        self.assertEqual(p["mode"], "postcopy")
        self.assertEqual(p["workload"], "zipf:rate=1000")
        self.assertEqual(config.knobs(p), {"precopy_passes": 0})

    def test_parts_concatenate_and_union_axes(self):
        m = parse("""
[[part]]
axes.mode = ["precopy", "hybrid"]
[[part]]
base.mode = "postcopy"
axes.push = ["seq", "hot"]
""")
        self.assertEqual(m["axes"], ["mode", "push"])
        self.assertEqual([c["name"] for c in m["cells"]], ["precopy", "hybrid", "seq", "hot"])
        self.assertEqual(m["cells"][3]["params"]["mode"], "postcopy")

    def test_rate_axis_sets_the_workload_rate(self):
        self.assertEqual(config.with_rate("uniform", 5), "uniform:rate=5")
        self.assertEqual(config.with_rate("kv:rate=9,set_pct=10", 5), "kv:set_pct=10,rate=5")

    def test_units(self):
        self.assertEqual(config.rate_bits("1gbit"), 1e9)
        self.assertEqual(config.rate_bits("2500mbit"), 2.5e9)
        self.assertEqual(config.mem_bytes("256M"), 256 << 20)
        self.assertEqual(config.mem_bytes("1G"), 1 << 30)
        with self.assertRaises(config.ConfigError):
            config.rate_bits("1gbps")
        with self.assertRaises(config.ConfigError):
            config.mem_bytes("lots")

    def test_errors_name_the_problem(self):
        bad = {
            "[axes]\nmode = []": "non-empty",
            "[axes]\nscenario = [\"x\"]": "not in [scenarios]",
            "[axes]\nlink = [\"5gbit\"]": "not defined",
            "colour = 1\n[axes]\nmode = [\"hybrid\"]": "unknown top-level",
            "[axes]\nmode = [\"hybrid\"]\n[compare]\naxes = [\"push\"]": "not an axis",
            "[axes]\nmode = [\"a\", \"a\"]": "repeat",
            "[base]\nmode = \"hybrid\"": "either one [axes]",
            "repeat = 0\n[axes]\nmode = [\"hybrid\"]": "repeat",
            "[[part]]\naxes.mode = [\"x\"]\n[[part]]\naxes.mode = [\"x\"]": "comes twice",
            "[axes]\ntls = [\"psk\", \"ssl\"]": "expected one of psk, insecure",
        }
        for text, words in bad.items():
            with self.subTest(text=text):
                with self.assertRaises(config.ConfigError) as cm:
                    parse(text)
                self.assertIn(words, str(cm.exception))

    def test_knobs_go_to_send_only(self):
        m = parse("[base]\npush = \"near\"\nvcpus = 1\n[axes]\nmode = [\"postcopy\"]")
        p = m["cells"][0]["params"]
        send = config.send_args(p, "1.2.3.4:5", "s.json", "k.psk")
        self.assertIn("push=near", send)
        self.assertEqual(send[send.index("--mode") + 1], "postcopy")
        self.assertEqual(send[send.index("--vcpus") + 1], "1")
        recv = config.recv_args(p, "1.2.3.4:0", "d.json", 7, "k.psk")
        self.assertNotIn("-o", recv)
        self.assertEqual(recv[recv.index("--ready-fd") + 1], "7")
        # TLS with the runner's key by default, the same on both sides.
        self.assertEqual(send[send.index("--tls-psk") + 1], "k.psk")
        self.assertEqual(recv[recv.index("--tls-psk") + 1], "k.psk")
        plain = dict(p, tls="insecure")
        self.assertIn("--insecure", config.send_args(plain, "a:1", "s", "k"))
        self.assertIn("--insecure", config.recv_args(plain, "a:0", "d", 3, "k"))

    def test_shipped_configs_parse(self):
        for name in ("quick.toml", "full.toml", "hybrid.toml"):
            with self.subTest(name=name):
                m = config.load(os.path.join(BENCH, name))
                self.assertGreater(len(m["cells"]), 1)


def report(side, **kw):
    doc = {"side": side, "mode": "postcopy", "result": "ok", "integrity": "ok",
           "guest": {"pages": 1000, "page_size": 4096}, "total_ms": 10.0,
           "downtime_ms": 1.0 if side == "source" else None,
           "bytes": {"total": 5000000, "precopy": 4096000, "stopcopy": 0, "push": 500000,
                     "pull": 403904},
           "pages": {"sent": 1000 if side == "source" else 0, "zero": 0,
                     "duplicate": 0 if side == "source" else 3, "pulled": 0 if side == "source" else 99,
                     "pushed": 0 if side == "source" else 120},
           "passes": [{"pass": 0, "pages_sent": 1000, "ms": 4.0}] if side == "source" else [],
           "switchover": {"reason": "max_passes" if side == "source" else None, "stale_pages": 7},
           "faults": {"count": 0 if side == "source" else 99,
                      "latency_us": {"p50": 80.0, "p99": 900.0}, "latency_hist_us": [0, 0, 5]},
           "start_unix_ms": 1000.0 if side == "source" else 1002.0,
           "timeline": [], "peak_rss_mib": 1.0 if side == "source" else 2.0,
           "security": {"encrypted": True, "cipher": "TLS1.3 AES-128-GCM"}}
    doc.update(kw)
    return doc


SRC_TL = [{"t_ms": 0.0, "event": "setup"}, {"t_ms": 50.0, "event": "done"},
          {"t_ms": 100.0, "event": None}]
DST_TL = [{"t_ms": 0.0, "event": "setup", "bytes_bulk": 0},
          {"t_ms": 1.0, "event": "receiving", "bytes_bulk": 80},
          {"t_ms": 5.0, "event": "pass 0", "bytes_bulk": 4_000_080},
          {"t_ms": 9.0, "event": "resumed", "bytes_bulk": 4_100_000},
          {"t_ms": 59.0, "event": "complete", "bytes_bulk": 5_000_000}]
LINK = {"name": "1gbit", "path": "veth", "rate_MBps": 125.0, "tcp_MBps": 1000.0,
        "tcp_fresh_MBps": 500.0}
CELL = {"name": "post_1gbit", "axes": {"scenario": "post"},
        "params": {"mode": "postcopy", "workload": "uniform:rate=1", "mem": "4M", "vcpus": 2,
                   "push": "hot", "link": "1gbit", "warmup": 1, "tls": "psk"}}


class Result(unittest.TestCase):
    def test_ok_only_when_both_sides_say_so(self):
        self.assertEqual(results.run_result(report("source"), report("destination")), ("ok", []))
        self.assertEqual(
            results.run_result(report("source"),
                               report("destination", result="failed", error="lost")),
            ("failed", ["destination: lost"]))
        self.assertEqual(results.run_result(None, report("destination", result="cancelled")),
                         ("failed", ["source: no report", "destination: no error message"]))
        self.assertEqual(results.run_result(report("source", result="cancelled", error="SIGINT"),
                                            report("destination")),
                         ("cancelled", ["source: SIGINT"]))


class Row(unittest.TestCase):
    def test_figures_and_ratios(self):
        src = report("source", timeline=SRC_TL)
        dst = report("destination", timeline=DST_TL)
        r = results.row(CELL, 0, LINK, src, dst, 0, 0)
        self.assertEqual((r["result"], r["integrity"], r["error"]), ("ok", "ok", None))
        self.assertAlmostEqual(r["pass0_MBps"], 1000.0)  # 4 MB in 4 ms, as received
        self.assertAlmostEqual(r["pass0_vs_tcp"], 1.0)
        self.assertAlmostEqual(r["pass0_vs_tcp_fresh"], 2.0)
        self.assertAlmostEqual(r["pass0_vs_link"], 8.0)
        self.assertAlmostEqual(r["resume_to_complete_ms"], 50.0)
        self.assertAlmostEqual(r["postcopy_MBps"], 903904 / 0.05 / 1e6)
        # The destination's last event is 2 ms later than its t 0 says; the
        # source's trailing sample row is not part of the migration.
        self.assertAlmostEqual(r["migration_ms"], 61.0)
        self.assertAlmostEqual(r["bytes_per_guest"], 5000000 / 4096000)
        self.assertEqual(r["knobs"], "push=hot")
        self.assertEqual(r["faults"], 99)             # the destination's
        self.assertEqual(r["switchover"], "max_passes")  # the source's
        self.assertEqual(r["security"], "TLS1.3 AES-128-GCM")
        self.assertEqual(r["tls"], "psk")
        plain = report("source", security={"encrypted": False, "integrity": "crc32c-table"})
        r = results.row(dict(CELL, params=dict(CELL["params"], tls="insecure")), 0, LINK,
                        plain, dst, 0, 0)
        self.assertEqual((r["tls"], r["security"]), ("insecure", "plaintext, crc32c-table"))

    def test_a_run_without_reports_is_a_failed_row(self):
        r = results.row(CELL, 1, LINK, None, None, 1, None, "killed after the 300 s timeout")
        self.assertEqual(r["result"], "failed")
        self.assertIsNone(r["integrity"])
        self.assertIn("killed", r["error"])
        self.assertIn("exit status send 1", r["error"])
        self.assertIn("source: no report", r["error"])

    def test_an_exit_status_fails_an_ok_report(self):
        r = results.row(CELL, 0, LINK, report("source"), report("destination"), 0, 1)
        self.assertEqual(r["result"], "failed")
        self.assertEqual(r["error"], "exit status send 0, recv 1")


class GuestSlow(unittest.TestCase):
    def test_samples_under_half_speed_after_the_resume(self):
        src = {"timeline": [{"t_ms": t, "event": None, "guest_ops_per_s": 100.0}
                            for t in (100, 200, 300)]}
        dst = {"timeline": [
            {"t_ms": 350, "event": "resumed"},
            {"t_ms": 400, "event": None, "guest_ops_per_s": 10.0},   # 50 ms slow
            {"t_ms": 500, "event": None, "guest_ops_per_s": 40.0},   # 100 ms slow
            {"t_ms": 600, "event": None, "guest_ops_per_s": 900.0},  # catching up
            {"t_ms": 700, "event": None, "guest_ops_per_s": 60.0},
            {"t_ms": 720, "event": "complete"},
            {"t_ms": 800, "event": None, "guest_ops_per_s": 1.0}]}  # after: not counted
        self.assertAlmostEqual(results.guest_slow_ms(src, dst), 150.0)
        self.assertIsNone(results.guest_slow_ms({"timeline": []}, dst))


class Summary(unittest.TestCase):
    def rows(self):
        out = []
        for i, (res, ms) in enumerate([("ok", 10), ("ok", 30), ("ok", 20), ("failed", 999)]):
            r = {c: None for c in results.COLUMNS}
            r.update(cell="a", run=i, result=res, integrity="ok", migration_ms=ms,
                     downtime_ms=1.0, scenario="x")
            out.append(r)
        r = {c: None for c in results.COLUMNS}
        r.update(cell="b", run=0, result="failed", integrity="mismatch", scenario="y")
        return out + [r]

    def test_medians_over_ok_runs_only(self):
        s = results.summarize(self.rows(), ["scenario"])
        self.assertEqual([e["cell"] for e in s], ["a", "b"])
        a, b = s
        self.assertEqual((a["runs"], a["ok"]), (4, 3))
        self.assertEqual(a["migration_ms"], (20, 10, 30))
        self.assertEqual(a["downtime_ms"], (1.0, 1.0, 1.0))
        self.assertEqual((b["runs"], b["ok"], b["migration_ms"]), (1, 0, None))

    def test_markdown_and_csv_round_trip(self):
        s = results.summarize(self.rows(), ["scenario"])
        md = results.summary_markdown(s, ["scenario"], ["migration_ms", "downtime_ms"])
        self.assertIn("| x | 3/4 | 20 (10–30) | 1.0 |", md)
        self.assertIn("| y | 0/1 | - | - |", md)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "runs.csv")
            results.write_csv(path, self.rows(), ["scenario"])
            back = results.read_csv(path)
            self.assertEqual(len(back), 5)
            # An axis that is also a column is one column, not two.
            results.write_csv(path, self.rows(), ["scenario", "link", "mem"])
            with open(path) as f:
                header = f.readline().strip().split(",")
            self.assertEqual(len(header), len(set(header)))
            self.assertEqual(header[0], "scenario")
            self.assertEqual(back[3]["result"], "failed")
            self.assertEqual(results.summarize(back, ["scenario"])[0]["migration_ms"],
                             (20, 10, 30))
            results.write_summary_csv(os.path.join(d, "summary.csv"), s, ["scenario"])
            self.assertTrue(os.path.getsize(os.path.join(d, "summary.csv")) > 0)


class Targets(unittest.TestCase):
    @staticmethod
    def run_row(mode, workload, push, ms, downtime, per_guest, pushed=0, result="ok"):
        return {"mode": mode, "workload": workload, "push": push, "link": "veth", "mem": "1G",
                "knobs": f"push={push}", "result": result, "integrity": "ok",
                "migration_ms": str(ms), "downtime_ms": str(downtime),
                "bytes_per_guest": str(per_guest), "bytes_push": str(pushed), "bytes_pull": ""}

    def test_low_rate(self):
        self.assertTrue(targets.low_rate("idle"))
        self.assertTrue(targets.low_rate("uniform:rate=20000"))
        self.assertFalse(targets.low_rate("zipf:s=0.99,rate=200000"))
        self.assertFalse(targets.low_rate("uniform:rate=0"))  # unthrottled
        self.assertFalse(targets.low_rate("uniform"))

    def test_each_target_met_or_missed(self):
        r = self.run_row
        rows = [r("precopy", "idle", "hot", 500, 9.0, 1.01),
                r("postcopy", "idle", "hot", 500, 1.0, 1.0, pushed=5),
                r("hybrid", "idle", "hot", 520, 1.5, 1.02),
                r("hybrid", "idle", "hot", 530, 1.6, 1.02),
                r("hybrid", "idle", "hot", 9, 0, 0, result="failed"),  # not counted
                r("precopy", "uniform:rate=0", "hot", 900, 300.0, 2.0),
                r("postcopy", "uniform:rate=0", "hot", 1000, 2.5, 1.2, pushed=9),
                r("hybrid", "uniform:rate=0", "hot", 1200, 1.0, 1.4, pushed=9)]
        self.assertEqual(targets.finished_as(rows[2:4]), "pre-copy 2/2")
        text = targets.tables(rows)
        bytes_t, down_t, low_t, time_t = text.split("\n\n")
        self.assertIn("| idle | hot | 1.01 | 1.00 | 1.02 | pre-copy 2/2 | met |", bytes_t)
        self.assertIn("| uniform:rate=0 | hot | 2.00 | 1.20 | 1.40 | post-copy 1/1 | **missed** |",
                      bytes_t)
        self.assertIn("| uniform:rate=0 | hot | 300.0 | 2.5 | **missed** | 1.0 | met |", down_t)
        self.assertIn("| idle | hot | pre-copy 2/2 | 1.02 | 1.6 (1.5–1.6) | met |", low_t)
        self.assertNotIn("uniform:rate=0", low_t)
        self.assertIn("| idle | hot | 500 | 500 | 525 (520–530) | 1.05 | met |", time_t)
        self.assertIn("| 1.20 | **missed** |", time_t)


class Plots(unittest.TestCase):
    def test_cdf_from_power_of_two_buckets(self):
        try:
            import plots
        except ImportError as e:
            self.skipTest(f"python3-matplotlib is not installed: {e}")
        xs, ys = plots.cdf_points([1, 0, 2, 1])
        self.assertEqual(xs, [1.0, 2.0, 4.0, 8.0])
        self.assertEqual(ys, [0.25, 0.25, 0.75, 1.0])
        self.assertEqual(plots.cdf_points([]), ([], []))
        parts = plots.phase_bytes(report("source"))
        self.assertEqual(parts, [("pass 0", 4096000), ("push", 500000), ("pull", 403904)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
