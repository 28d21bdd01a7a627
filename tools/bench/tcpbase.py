#!/usr/bin/python3
"""Raw TCP through the same link as the migrations: the baseline that hmig's
throughput is judged against, measured in the same run.

  tcpbase.py sink HOST          listen on HOST, print the port, take two
                                connections, print one JSON line of MB/s
  tcpbase.py blast HOST:PORT S  send zeros for S seconds, twice

The first connection is received into one reused 1 MiB buffer: what the link
and the two TCP stacks can do.  The second goes into fresh anonymous memory,
256 MiB at a time, unmapped when full: that pays the page allocation a
destination pays for every page it installs (docs/benchmarks.md, "a property
of this machine").  Each is timed at the receiver, first byte to EOF.

Python adds little here: each call moves 1 MiB, so the kernel's copies and
the link dominate (1.8 GB/s through an unshaped veth on this machine).
"""
import json
import mmap
import socket
import sys
import time

CHUNK = 1 << 20
REGION = 256 << 20


def _receive(conn, fresh):
    n, t0 = 0, None
    buf = memoryview(bytearray(CHUNK))
    region = view = None
    off = REGION
    while True:
        if fresh:
            if off == REGION:
                if region is not None:
                    view.release()
                    region.close()
                region = mmap.mmap(-1, REGION, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                view, off = memoryview(region), 0
            with view[off:off + CHUNK] as part:
                k = conn.recv_into(part)
            off += k
        else:
            k = conn.recv_into(buf)
        if t0 is None:
            t0 = time.monotonic()
        if not k:
            break
        n += k
    dt = time.monotonic() - (t0 or time.monotonic())
    if region is not None:
        view.release()
        region.close()
    return n / dt / 1e6 if dt > 0 else None


def sink(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(1)
    print(s.getsockname()[1], flush=True)
    out = {}
    for key, fresh in (("tcp_MBps", False), ("tcp_fresh_MBps", True)):
        conn, _ = s.accept()
        with conn:
            out[key] = _receive(conn, fresh)
    print(json.dumps(out), flush=True)


def blast(addr, seconds):
    host, port = addr.rsplit(":", 1)
    data = bytes(CHUNK)
    for _ in range(2):
        with socket.create_connection((host, int(port))) as c:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                c.sendall(data)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        sink(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "blast":
        blast(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("usage: tcpbase.py sink HOST | blast HOST:PORT SECONDS")
