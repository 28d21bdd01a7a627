"""A benchmark matrix's configuration: a TOML file read into cells.

The file (tools/bench/quick.toml is a commented example) has:

  name, repeat     the matrix's name and how many runs each cell gets
  [base]           the parameters every cell starts from
  [axes]           parameter = [values]: the matrix is their cartesian product
  [[part]]         instead of [axes]: several products, each with axes and base
  [scenarios]      named sets of parameters, guestperf-style ("post-copy-iters-0"),
                   chosen by the "scenario" axis
  [links]          named links, beside the built-in ones (LINKS below)
  [compare]        axes = [...]: which axes the comparison plots overlay

A parameter is one of GUEST_KEYS and RUN_KEYS (options of 'hmig send' and of
this runner), "mode" (--mode), "rate" (appended to the workload as rate=N,
the dirty rate), "link", or else a knob passed to 'hmig send' as -o key=value.
The destination gets no knob: every knob that shapes a migration is the
source's, and 'hmig recv' takes its guest's make-up from the source.

Everything here is pure (no I/O but reading the file), so it is unit-tested
in test_bench.py.
"""
import itertools
import re
import tomllib

# Synth's own options of 'hmig send' (--mem, --vcpus, ...).
GUEST_KEYS = ("mem", "vcpus", "workload", "fill", "seed")
# Options of this runner and of 'hmig send'/'hmig recv' that are not knobs.
RUN_KEYS = ("warmup", "run_after", "timeout", "link", "scenario", "tls")
# How the channels are protected: "psk", TLS 1.3 with a pre-shared key the
# runner makes ('hmig keygen --psk'), as a user would run it; "insecure",
# plaintext with a CRC32C per page ('--insecure').
TLS_MODES = ("psk", "insecure")

DEFAULTS = {
    "mem": "256M",
    "vcpus": 2,
    "workload": "uniform:rate=20000",
    "mode": "hybrid",
    "warmup": 1,       # seconds the guest runs before the migration
    "run_after": 1,    # seconds the destination runs it before the oracle
    "timeout": 300,    # seconds before a run is killed and recorded as failed
    "link": "veth",
    "tls": "psk",
}

# The built-in links.  "lo": loopback in this network namespace.  "veth": a
# veth pair between two network namespaces, unshaped.  The others add a tbf
# qdisc at `rate` on both ends, or with qdisc = "prio" an htb whose leaf
# honours SO_PRIORITY (link.py).  Latency is not shaped: this kernel has no
# netem.  mtu 1500 is Ethernet's: at it, TCP/IP and Ethernet headers take
# 66 of every 1514 bytes, so the best TCP goodput is 95.6% of the rate.
LINKS = {
    "lo": {"kind": "lo"},
    "veth": {"kind": "veth", "mtu": 1500},
    "10gbit": {"kind": "veth", "rate": "10gbit", "mtu": 1500},
    "1gbit": {"kind": "veth", "rate": "1gbit", "mtu": 1500},
    "1gbit-prio": {"kind": "veth", "rate": "1gbit", "mtu": 1500, "qdisc": "prio"},
}

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


class ConfigError(ValueError):
    """A configuration the matrix cannot run, with one line saying why."""


def rate_bits(rate):
    """tc's rate syntax ("1gbit", "500mbit", "100kbit") in bits/s."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)bit", str(rate).strip().lower())
    if not m:
        raise ConfigError(f"link rate {rate!r}: expected a number and kbit, mbit, gbit or tbit")
    return float(m.group(1)) * _UNITS[m.group(2)]


def mem_bytes(mem):
    """'hmig send --mem' syntax ("256M", "1G", "4096K", or bytes) in bytes."""
    m = re.fullmatch(r"(\d+)([KMGT]?)", str(mem).strip().upper())
    if not m:
        raise ConfigError(f"mem {mem!r}: expected a number with K, M, G or T")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2) or " "))


def with_rate(workload, rate):
    """The workload spec with its rate set: "uniform" + 20000 is
    "uniform:rate=20000"; a rate already in the spec is replaced."""
    name, _, params = str(workload).partition(":")
    kept = [p for p in params.split(",") if p and not p.startswith("rate=")]
    return f"{name}:" + ",".join(kept + [f"rate={int(rate)}"])


def slug(v):
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(v)).strip("-")


def load(path):
    with open(path, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    return parse(doc)


def parse(doc):
    """The matrix a parsed TOML document describes: a dict with name,
    repeat, cells (each a dict with "name", "axes" and "params"), axes (every
    axis name, in order), links and compare.

    A matrix is one [axes] table, or several [[part]] tables, each with its
    own axes (and optionally its own base, over the file's): its cells are
    the parts' cells, one after the other.  Parts let one file hold products
    that would be wasteful as one (every push order only in post-copy)."""
    known = {"name", "repeat", "base", "axes", "part", "scenarios", "links", "compare"}
    extra = set(doc) - known
    if extra:
        raise ConfigError(f"unknown top-level key(s) {sorted(extra)}; expected {sorted(known)}")
    if ("axes" in doc) == ("part" in doc):
        raise ConfigError("give either one [axes] table or [[part]] tables, not both or neither")
    repeat = doc.get("repeat", 1)
    if not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"repeat = {repeat!r}: expected an integer of 1 or more")
    base = dict(DEFAULTS)
    base.update(doc.get("base", {}))
    scenarios = doc.get("scenarios", {})
    links = dict(LINKS)
    links.update(doc.get("links", {}))
    for name, link in links.items():
        if link.get("kind", "veth") not in ("lo", "veth"):
            raise ConfigError(f"link {name!r}: kind must be lo or veth")
        if "rate" in link:
            rate_bits(link["rate"])
        if link.get("qdisc", "tbf") not in ("tbf", "prio"):
            raise ConfigError(f"link {name!r}: qdisc must be tbf or prio")
    parts = doc.get("part") or [{"axes": doc["axes"]}]
    names, cells = [], []
    for part in parts:
        axes = part.get("axes") or {}
        for a in axes:
            if a not in names:
                names.append(a)
        pbase = dict(base)
        pbase.update(part.get("base", {}))
        cells += _cells(axes, pbase, scenarios, links)
    seen = set()
    for c in cells:
        if c["name"] in seen:
            raise ConfigError(f"cell {c['name']!r} comes twice; parts must differ in their values")
        seen.add(c["name"])
    compare = doc.get("compare", {}).get("axes", [])
    for a in compare:
        if a not in names:
            raise ConfigError(f"compare axis {a!r} is not an axis")
    return {"name": doc.get("name", "matrix"), "repeat": repeat, "cells": cells,
            "links": links, "compare": compare, "axes": names}


def _cells(axes, base, scenarios, links):
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"axis {k!r}: expected a non-empty list of values")
        if len(set(map(str, v))) != len(v):
            raise ConfigError(f"axis {k!r}: values repeat")
    for s in axes.get("scenario", []):
        if s not in scenarios:
            raise ConfigError(f"scenario {s!r} is on the axis but not in [scenarios]")
    names = list(axes)
    cells = []
    for values in itertools.product(*(axes[n] for n in names)):
        chosen = dict(zip(names, values))
        params = dict(base)
        if "scenario" in chosen:
            params.update(scenarios[chosen["scenario"]])
        params.update(chosen)
        if "rate" in params:
            params["workload"] = with_rate(params["workload"], params.pop("rate"))
        if params["link"] not in links:
            raise ConfigError(f"link {params['link']!r} is not defined; known: {sorted(links)}")
        mem_bytes(params["mem"])
        if params["tls"] not in TLS_MODES:
            raise ConfigError(f"tls = {params['tls']!r}: expected one of {', '.join(TLS_MODES)}")
        name = "_".join(slug(v) for v in values) or "cell"
        cells.append({"name": name, "axes": chosen, "params": params})
    return cells


def knobs(params):
    """The -o knobs of a cell: every parameter that is not an option."""
    skip = set(GUEST_KEYS) | set(RUN_KEYS) | {"mode"}
    return {k: v for k, v in params.items() if k not in skip}


def tls_args(params, psk_path):
    """The TLS options both sides take, the same on each."""
    return ["--insecure"] if params["tls"] == "insecure" else ["--tls-psk", psk_path]


def send_args(params, to, json_path, psk_path):
    """'hmig send' arguments for a cell's parameters."""
    args = ["send", "--to", to, "--json", json_path, "--quiet",
            "--mode", str(params["mode"]), "--warmup", str(params["warmup"])]
    args += tls_args(params, psk_path)
    for k in GUEST_KEYS:
        if k in params:
            args += [f"--{k}", str(params[k])]
    for k, v in knobs(params).items():
        args += ["-o", f"{k}={v}"]
    return args


def recv_args(params, listen, json_path, ready_fd, psk_path):
    """'hmig recv' arguments: it writes its bound address to ready_fd."""
    return (["recv", "--listen", listen, "--json", json_path, "--quiet",
             "--ready-fd", str(ready_fd), "--run-after", str(params["run_after"])]
            + tls_args(params, psk_path))
