#!/usr/bin/env python3
"""Captures the seed corpus of tests/fuzz from real migrations.

Runs 'hmig recv --insecure' and 'hmig send --insecure' on loopback with a
recording relay between them, and writes, per migration:
  records/<name>   what the source sent on bulk (a record stream)
  dest/<name>      the same, then "HMIGURGT" and what it sent on urgent:
                   the destination's input
  source/<name>    the mode byte, what the destination sent on bulk, then
                   "HMIGURGT" and what it sent on urgent: the source's input
The 32-byte channel preambles are left out (the fakes stand in for
src/net).  Guests are 64 pages, 1 vCPU: the fuzz targets' fake guests.

  tests/fuzz/capture.py build/tools/hmig/hmig tests/fuzz/corpus
"""
import os, socket, subprocess, sys, threading, time

PRE = 32
MODES = {"precopy": 0, "postcopy": 1, "hybrid": 2}


def relay(lsock, target, rec):
    """Relays the two connections of one migration, recording each way."""
    threads = []
    for _ in range(2):
        a, _ = lsock.accept()
        b = socket.create_connection(target)
        slot = {"up": bytearray(), "down": bytearray()}
        rec.append(slot)
        for src, dst, key in ((a, b, "up"), (b, a, "down")):
            def pump(src=src, dst=dst, key=key, slot=slot):
                while True:
                    try:
                        d = src.recv(65536)
                    except OSError:
                        d = b""
                    if not d:
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        return
                    slot[key] += d
                    try:
                        dst.sendall(d)
                    except OSError:
                        return
            t = threading.Thread(target=pump, daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(60)


def migrate(hmig, name, mode, workload, extra, out):
    r, w = os.pipe()
    recv = subprocess.Popen([hmig, "recv", "--insecure", "--listen", "127.0.0.1:0",
                             "--ready-fd", str(w), "--run-after", "0.1", "--quiet"] + extra,
                            pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    addr = os.read(r, 128).decode().strip()
    os.close(r)
    host, port = addr.rsplit(":", 1)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(2)
    rec = []
    t = threading.Thread(target=relay, args=(ls, (host, int(port)), rec), daemon=True)
    t.start()
    send = subprocess.run([hmig, "send", "--insecure", "--to",
                           "127.0.0.1:%d" % ls.getsockname()[1], "--mem", "256K",
                           "--vcpus", "1", "--workload", workload, "--warmup", "0.2", "--fill", "0.05",
                           "--mode", mode, "--quiet"] + extra, stderr=subprocess.DEVNULL)
    recv.wait(30)
    t.join(30)
    ls.close()
    kinds = {}
    for slot in rec:
        kind = int.from_bytes(slot["up"][16:20], "little")
        kinds[kind] = slot
    if send.returncode or recv.returncode or len(kinds) != 2:
        print("capture: %s failed (send %s, recv %s)" % (name, send.returncode, recv.returncode))
        return
    bulk, urgent = kinds[0], kinds[1]
    for sub, data in (("records", bulk["up"][PRE:]),
                      ("dest", bulk["up"][PRE:] + b"HMIGURGT" + urgent["up"][PRE:]),
                      ("source", bytes([MODES[mode]]) + bulk["down"] + b"HMIGURGT" + urgent["down"])):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        with open(os.path.join(out, sub, name), "wb") as f:
            f.write(data)
    print("capture: %s: %d bytes to the destination, %d back" %
          (name, len(bulk["up"]) + len(urgent["up"]), len(bulk["down"]) + len(urgent["down"])))


def main():
    hmig, out = sys.argv[1], sys.argv[2]
    migrate(hmig, "precopy-idle", "precopy", "idle", [], out)
    migrate(hmig, "precopy-writes", "precopy", "uniform:rate=100", [], out)
    migrate(hmig, "hybrid-writes", "hybrid", "uniform:rate=100", ["-o", "max_passes=2"], out)
    migrate(hmig, "postcopy-push", "postcopy", "uniform:rate=100", ["-o", "push=seq"], out)
    migrate(hmig, "postcopy-pull", "postcopy", "uniform:rate=100",
            ["-o", "push=off", "-o", "precopy_passes=0"], out)


main()
