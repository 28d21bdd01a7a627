"""The link between source and destination: two network namespaces joined by
a veth pair, shaped with tc tbf, or loopback.

One Netns pair serves a whole matrix: `shape()` swaps the qdisc between
links, so no cell waits for namespaces to come and go.  The namespaces are
named after this process (hmb<pid>s, hmb<pid>d), so two matrices never
collide and `sweep_stale()` can remove what a killed runner left behind.
Removing a namespace removes its end of the veth pair, and so the pair.

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for
benchmarks: they exist only inside these two namespaces.

Latency is not shaped: tbf limits the rate only, and this kernel has no
netem.  The veth pair itself adds no delay beyond the kernel's own.
"""
import os
import re
import shutil
import subprocess

from config import rate_bits

PREFIX = "hmb"
SRC_ADDR, DST_ADDR = "198.18.0.1", "198.18.0.2"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def sweep_stale():
    """Deletes namespaces of this tool whose runner is gone (killed with
    SIGKILL, or the machine lost power mid-run).  Returns their names."""
    try:
        out = _ip("netns", "list", check=False).stdout
    except FileNotFoundError:
        return []
    gone = []
    for line in out.splitlines():
        m = re.match(rf"({PREFIX}(\d+)[sd])\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            _ip("netns", "del", m.group(1), check=False)
            gone.append(m.group(1))
    return gone


class Netns:
    """A source namespace and a destination namespace joined by a veth pair.

    open() makes them, close() removes them; or use it as a context manager.
    The runner closes it in a finally, so the namespaces go on any exit,
    KeyboardInterrupt included (it turns SIGTERM and SIGHUP into one)."""

    def __init__(self):
        tag = f"{PREFIX}{os.getpid()}"
        self.src, self.dst = tag + "s", tag + "d"
        self.created = []
        self.qdisc = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        """Makes the pair; on any failure removes what it made and raises."""
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self):
        for ns in (self.src, self.dst):
            _ip("netns", "add", ns)
            self.created.append(ns)
        # veth names are at most 15 bytes; the namespace names fit.
        _ip("link", "add", self.src, "type", "veth", "peer", "name", self.dst)
        _ip("link", "set", self.src, "netns", self.src)
        _ip("link", "set", self.dst, "netns", self.dst)
        for ns, addr in ((self.src, SRC_ADDR), (self.dst, DST_ADDR)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", ns, "up")

    def close(self):
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        self.created = []

    def exec_prefix(self, side):
        """The command prefix that runs a program in one side's namespace."""
        return ["ip", "netns", "exec", self.src if side == "src" else self.dst]

    def shape(self, link):
        """Sets both ends to `link` (a LINKS entry): its MTU, and at its rate
        either a tbf (qdisc "tbf", the default: one FIFO, as most paths
        are) or an htb class with a pfifo_fast leaf (qdisc "prio": its
        bands follow SO_PRIORITY, so hmig's urgent channel, priority 6,
        goes ahead of the bulk channel's queue; this kernel has no prio,
        fq or fq_codel qdisc); or no qdisc at all.  Returns a one-line
        description."""
        mtu = str(link.get("mtu", 1500))
        rate = link.get("rate")
        qdisc = link.get("qdisc", "tbf")
        for ns in (self.src, self.dst):
            _ip("-n", ns, "link", "set", ns, "mtu", mtu)
            _tc(ns, "qdisc", "del", "dev", ns, "root", check=False)
            if not rate:
                continue
            # burst: 8 ms at the rate.  The bucket needs at least one 64 KiB
            # GSO packet; much less than a few ms of traffic makes TCP stall
            # on it (at 10gbit, a 1.25 MB tbf burst reached 91% of the rate,
            # 10 MB 92-95%).  tbf's latency bounds its queue.
            burst = str(max(int(rate_bits(rate) / 8 * 0.008), 256 * 1024))
            if qdisc == "prio":
                _tc(ns, "qdisc", "add", "dev", ns, "root", "handle", "1:", "htb", "default", "1")
                _tc(ns, "class", "add", "dev", ns, "parent", "1:", "classid", "1:1", "htb",
                    "rate", rate, "ceil", rate, "burst", burst, "cburst", burst)
                _tc(ns, "qdisc", "add", "dev", ns, "parent", "1:1", "handle", "10:", "pfifo_fast")
            else:
                _tc(ns, "qdisc", "add", "dev", ns, "root", "tbf", "rate", rate, "burst", burst,
                    "latency", "20ms")
        self.qdisc = rate
        shaped = ("unshaped" if not rate else
                  f"htb {rate} + pfifo_fast (priority bands) both ways" if qdisc == "prio" else
                  f"tbf {rate} both ways")
        return f"veth {self.src}<->{self.dst}, mtu {mtu}, {shaped}, latency not shaped (no netem)"


def _tc(ns, *args, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, "tc", *args], check=check,
                          capture_output=True, text=True)


def netns_unavailable():
    """Why this process cannot make namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (iproute2)"
    return None
