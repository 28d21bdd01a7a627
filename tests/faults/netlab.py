"""The test bed of tests/faults: two network namespaces joined by a veth pair,
a relay in the source's namespace that watches the hmig record stream, and
the two hmig processes.  Python 3's standard library and python3-cryptography
(AES-GCM); needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN for setns).

    source namespace                               destination namespace
    hmig send -> 127.0.0.1:R  relay ==== veth ==== 10.213.0.2:PORT hmig recv

The link that is cut is the veth pair (`ip link set ... down`, then up).  The
relay only forwards bytes and reads record headers as they go by, so a rule
can act at an exact record boundary ("cut the link before COMMIT goes onto
it") while what was in flight is real TCP, retransmitted when the link comes
back.  The channels run TLS 1.3 as in production: the relay reads the hmig
records inside with the secrets GnuTLS logs where SSLKEYLOGFILE says (as
Wireshark does), and forwards the TLS records untouched.  It can also drop
one direction from a given record on: a proxy that loses what one side says
while the other side's bytes still flow.  Cases that need no record boundary
run with no relay at all (the source connects over the veth itself).
"""

import collections
import ctypes
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
except ImportError:  # check_privileges says so: the suite is skipped
    AESGCM = None

# Record types (docs/protocol.md, "Records").
HELLO, PAGES, ZERO, PASS_END, STALE, VCPU_STATE, RESUMED, REQUEST, DONE, ERROR, \
    DIRTY, SYNC, LOADED, COMMIT, VERDICT, RECOVER, MISSING = range(1, 18)
TYPE_NAMES = {v: k for k, v in dict(
    HELLO=HELLO, PAGES=PAGES, ZERO=ZERO, PASS_END=PASS_END, STALE=STALE,
    VCPU_STATE=VCPU_STATE, RESUMED=RESUMED, REQUEST=REQUEST, DONE=DONE, ERROR=ERROR,
    DIRTY=DIRTY, SYNC=SYNC, LOADED=LOADED, COMMIT=COMMIT, VERDICT=VERDICT,
    RECOVER=RECOVER, MISSING=MISSING).items()}
BULK, URGENT = 0, 1
PREAMBLE_LEN = 32  # docs/protocol.md, "The channel preamble"
SD, DS = "src->dst", "dst->src"  # directions

PREFIX = "hmf"  # every namespace and interface this bed makes starts with it


class Skip(Exception):
    """The bed cannot run here; the message says why."""


def sh(*argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


# ------------------------------------------------------------ namespaces

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def ns_socket(ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket of network namespace `ns`: this thread enters it for the
    socket() call only (setns is per thread for network namespaces)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, kind)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def check_privileges():
    if os.geteuid() != 0:
        raise Skip("needs root: network namespaces and a veth pair (CAP_NET_ADMIN)")
    if AESGCM is None:
        raise Skip("needs python3-cryptography, to read the records inside TLS (tools/run installs it)")
    if not shutil.which("ip"):
        raise Skip("needs iproute2's 'ip' (tools/run installs it)")
    name = "%sprobe%d" % (PREFIX, os.getpid())
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode:
        raise Skip("cannot create a network namespace (no CAP_NET_ADMIN/CAP_SYS_ADMIN?): "
                   + r.stderr.strip())
    sh("ip", "netns", "del", name, check=False)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale():
    """Namespaces left by a run of this bed that was killed outright (its pid
    in the name, that process gone).  Deleting a namespace removes its veth
    end, and the pair with it."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(%s(\d+)c\d+[sd])\b" % PREFIX, line)
        if m and not _pid_alive(int(m.group(2))):
            sh("ip", "netns", "del", m.group(1), check=False)


class Link:
    """Two namespaces and the veth pair between them, with unique names; close()
    removes all of it (call it in a finally)."""

    count = 0

    def __init__(self):
        Link.count += 1
        tag = "%s%dc%d" % (PREFIX, os.getpid(), Link.count)
        self.ns = {"s": tag + "s", "d": tag + "d"}
        self.dev = dict(self.ns)  # interface names: the same, at most 15 bytes
        assert len(tag) + 1 <= 15, tag
        self.ip = {"s": "10.213.0.1", "d": "10.213.0.2"}
        self._lock = threading.Lock()
        self.is_up = True
        self._up = threading.Event()
        self._up.set()
        try:
            for end in "sd":
                sh("ip", "netns", "add", self.ns[end])
            sh("ip", "link", "add", self.dev["s"], "netns", self.ns["s"], "type", "veth",
               "peer", "name", self.dev["d"], "netns", self.ns["d"])
            for end in "sd":
                sh("ip", "-n", self.ns[end], "addr", "add", self.ip[end] + "/24", "dev",
                   self.dev[end])
                sh("ip", "-n", self.ns[end], "link", "set", self.dev[end], "up")
                sh("ip", "-n", self.ns[end], "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def down(self, end="s"):
        """Cuts the link: one end of the veth down (the other loses its carrier)."""
        with self._lock:
            if not self.is_up:
                return
            sh("ip", "-n", self.ns[end], "link", "set", self.dev[end], "down")
            self.is_up = False
            self._up.clear()
            self._end = end

    def up(self):
        with self._lock:
            if self.is_up:
                return
            sh("ip", "-n", self.ns[self._end], "link", "set", self.dev[self._end], "up")
            self.is_up = True
            self._up.set()

    def wait_up(self):
        self._up.wait()

    def close(self):
        for end in "sd":
            sh("ip", "netns", "del", self.ns[end], check=False)


# ------------------------------------------------------------ the watch

class Watch:
    """What crossed the link, record by record, and the rules that act on it.

    Every record is seen once, by the relay on its sender's side, just before
    it enters the link: ev = dict(what="rec", d=SD|DS, kind=BULK|URGENT,
    gen=connection generation (1 the first pair, 2 the first reconnection,
    ...), type, flags, len, n=how many of that (d, kind, type) so far, t).  Other
    events: what="conn" (the source opened a connection: kind, gen), what=
    "closed" (the source closed or reset its connection: side "s"; the
    destination closed its own: side "d"; the relay's connection over the
    link died or could not be made: side "link").

    A rule is (pred, action, once): pred(ev) decides, action(ev) runs in the
    relay's thread before the record is forwarded and may return "drop" to
    discard this record and the rest of that direction of that connection,
    or "cut" when it cut the link (a record from the destination is then held
    until the link is back: it was in flight).  Over TLS the relay acts on
    whole TLS records: "this record" is the TLS record that completes the
    hmig record's header.
    """

    def __init__(self):
        self.cv = threading.Condition()
        self.log = []
        self.n = collections.Counter()
        self.rules = []
        self.t0 = time.monotonic()

    def when(self, pred, action, once=True):
        with self.cv:
            self.rules.append([pred, action, once])

    def event(self, ev):
        actions = []
        with self.cv:
            ev["t"] = time.monotonic()
            if ev["what"] == "rec":
                key = (ev["d"], ev["kind"], ev["type"])
                self.n[key] += 1
                ev["n"] = self.n[key]
            self.log.append(ev)
            for r in list(self.rules):
                if r[0](ev):
                    actions.append(r[1])
                    if r[2]:
                        self.rules.remove(r)
            self.cv.notify_all()
        verdict = None
        for a in actions:
            verdict = a(ev) or verdict
        return verdict

    def summary(self):
        """What crossed, for a failure message: records per (direction, gen,
        type), connections and closes, link cuts."""
        with self.cv:
            c = collections.Counter()
            for e in self.log:
                if e["what"] == "rec":
                    c["%s g%d %s" % ("s>d" if e["d"] == SD else "d>s", e["gen"],
                                     TYPE_NAMES.get(e["type"], e["type"]))] += 1
                else:
                    c["%s %s g%d" % (e["what"], e.get("side", ""), e["gen"])] += 1
            return ", ".join("%s x%d" % kv for kv in sorted(c.items()))

    def seen(self, pred):
        with self.cv:
            return any(pred(e) for e in self.log)

    def first(self, pred):
        with self.cv:
            return next((e for e in self.log if pred(e)), None)

    def wait(self, pred, timeout, what="an event"):
        """Waits until some event satisfies pred; a hang detector, not a
        measurement: the bound is generous."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.log:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
                self.cv.wait(left)


def rec(d=None, rtype=None, kind=None, n=None, gen=None):
    """A predicate on record events."""
    def p(ev):
        return (ev["what"] == "rec" and (d is None or ev["d"] == d)
                and (rtype is None or ev["type"] == rtype)
                and (kind is None or ev["kind"] == kind)
                and (n is None or ev["n"] == n) and (gen is None or ev["gen"] == gen))
    return p


# ------------------------------------------------------------ the relays

class _Conn:
    def __init__(self, kind, session, gen, tls):
        self.kind, self.session, self.gen, self.tls = kind, session, gen, tls
        self.hello = dict(random=None, suite=None, suite_set=threading.Event())


class _Stream:
    """Splits the plaintext of one direction of a connection (after its
    preamble: `skip` bytes) into record boundaries."""

    def __init__(self, skip=0):
        self.hdr = b""
        self.body_left = 0
        self.skip = skip

    def feed(self, data):
        """[("data", bytes) | ("rec", type, flags, len)], a record's event
        before its first byte."""
        out, i, n = [], 0, len(data)
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                out.append(("data", data[i:i + k]))
                self.skip -= k
            elif self.body_left:
                k = min(self.body_left, n - i)
                out.append(("data", data[i:i + k]))
                self.body_left -= k
            else:
                k = min(16 - len(self.hdr), n - i)
                self.hdr += bytes(data[i:i + k])
                if len(self.hdr) == 16:
                    t, fl, blen, _ = struct.unpack("<IIII", self.hdr)
                    out.append(("rec", t, fl, blen))
                    out.append(("data", self.hdr))
                    self.hdr, self.body_left = b"", blen
            i += k
        return out


# ------------------------------------------------------------ TLS 1.3, read-only

class KeyLog:
    """The TLS secrets hmig's GnuTLS writes where SSLKEYLOGFILE says (NSS's
    key log format, the one Wireshark reads): the relay reads the records
    with them to find the hmig records inside, and forwards the ciphertext
    untouched.  hmig itself runs its production TLS path."""

    WAIT_S = 10.0  # a secret is logged before its first record can cross

    def __init__(self, paths):
        self.paths = paths
        self.secrets = {}

    def get(self, label, client_random):
        deadline = time.monotonic() + self.WAIT_S
        while True:
            v = self.secrets.get((label, client_random))
            if v is not None:
                return v
            for path in self.paths:
                try:
                    with open(path) as f:
                        for line in f:
                            w = line.split()
                            if len(w) == 3:
                                self.secrets[(w[0], bytes.fromhex(w[1]))] = bytes.fromhex(w[2])
                except OSError:
                    pass
            if (label, client_random) in self.secrets:
                continue
            if time.monotonic() > deadline:
                raise RuntimeError("no %s in the key log %s" % (label, self.paths))
            time.sleep(0.005)


# TLS 1.3 cipher suites (RFC 8446, B.4): AEAD, key length, hash.
_SUITES = {0x1301: ("aes", 16, hashlib.sha256), 0x1302: ("aes", 32, hashlib.sha384),
           0x1303: ("chacha", 32, hashlib.sha256)}


def _expand_label(secret, label, length, hashf):
    """HKDF-Expand-Label (RFC 8446, 7.1) with an empty context."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\0"
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), hashf).digest()
        out += t
        i += 1
    return out[:length]


class _Keys:
    """One direction's traffic keys: the handshake's, then the
    application's (and their updates)."""

    def __init__(self, secret, suite):
        aead, klen, self.hashf = _SUITES[suite]
        self.aead = AESGCM if aead == "aes" else ChaCha20Poly1305
        self.klen = klen
        self.set(secret)

    def set(self, secret):
        self.secret = secret
        self.cipher = self.aead(_expand_label(secret, b"key", self.klen, self.hashf))
        self.iv = _expand_label(secret, b"iv", 12, self.hashf)
        self.seq = 0

    def open(self, rec):
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        pt = self.cipher.decrypt(nonce, bytes(rec[5:]), bytes(rec[:5]))
        self.seq += 1
        pt = pt.rstrip(b"\0")
        return pt[-1], pt[:-1]

    def update(self):
        self.set(_expand_label(self.secret, b"traffic upd", self.hashf().digest_size,
                               self.hashf))


class _TlsStream:
    """One direction of a TLS 1.3 connection: splits the ciphertext into TLS
    records and the plaintext into hmig records, so that an hmig record's
    event comes before the TLS record that carries its header's last byte
    (what the pumps forward whole)."""

    def __init__(self, d, keylog, hello):
        self.d = d  # SD: the client's (TLS client) records, DS the server's
        self.keylog, self.hello = keylog, hello  # hello: shared by both directions
        self.buf = b""
        self.keys = None
        self.app = False
        self.inner = _Stream(skip=32 if d == SD else 0)  # the preamble again

    def _label(self, app):
        side = "CLIENT" if self.d == SD else "SERVER"
        return "%s_%s" % (side, "TRAFFIC_SECRET_0" if app else "HANDSHAKE_TRAFFIC_SECRET")

    def _decrypt(self, rec):
        if self.keys is None:
            self.hello["suite_set"].wait(KeyLog.WAIT_S)
            self.keys = _Keys(self.keylog.get(self._label(False), self.hello["random"]),
                              self.hello["suite"])
        try:
            return self.keys.open(rec)
        except InvalidTag:
            if self.app:
                raise
        # The handshake is over: its first application record.
        self.app = True
        self.keys.set(self.keylog.get(self._label(True), self.hello["random"]))
        return self.keys.open(rec)

    def feed(self, data):
        self.buf += bytes(data)
        out = []
        while len(self.buf) >= 5:
            ctype, _, n = struct.unpack(">BHH", self.buf[:5])
            if len(self.buf) < 5 + n:
                break
            rec, self.buf = self.buf[:5 + n], self.buf[5 + n:]
            if ctype == 22 and rec[5] == 1:  # ClientHello: its random names the keys
                self.hello["random"] = rec[11:43]
            elif ctype == 22 and rec[5] == 2:  # ServerHello: the cipher suite
                sid = rec[43]
                self.hello["suite"] = struct.unpack(">H", rec[44 + sid:46 + sid])[0]
                self.hello["suite_set"].set()
            elif ctype == 23:
                inner_type, pt = self._decrypt(rec)
                if inner_type == 23 and self.app:
                    out += [e for e in self.inner.feed(pt) if e[0] == "rec"]
                elif inner_type == 22 and self.app and pt[:1] == b"\x18":
                    self.keys.update()  # KeyUpdate: the next records use the next secret
            out.append(("data", rec))
        return out


def _reset(sock):
    """Closes with RST, as a kernel does for a process that died with unread
    data, or for a connection that timed out.  The other pump of the
    connection may be blocked reading this socket, and the kernel releases
    it (sending the RST) only once that read returns: SHUT_RD wakes it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Relay:
    """The relay in the source's namespace.  The source connects to
    `self.addr`; the relay connects over the link to the destination, which
    listens on the veth address itself.  So the destination's connections
    are plain TCP across the link, as in production: what it sent is
    acknowledged only once it crossed, and its own keepalive sees a dead
    link.  The source's side is loopback: when the relay's connection over
    the link dies (it has the same keepalive as hmig's, io_timeout_ms) it
    resets the source's, as the source's kernel would.

    Records from the source are watched just before they enter the link,
    records from the destination just after they crossed it; a rule that
    cuts the link at one of the latter holds it and what follows until the
    link is back, as if they had been in flight."""

    UP_CONNECT_S = 1.0  # the connect over the link; the source retries anyway

    def __init__(self, link, watch, dst_port, dead_ms, keylog=None):
        self.link, self.watch, self.dst_port = link, watch, dst_port
        self.keylog = keylog
        self.dead_ms = dead_ms
        self.gen = 0
        self.lock = threading.Lock()
        self.socks = []
        self.stopping = False
        self.ls = ns_socket(link.ns["s"])
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, s):
        with self.lock:
            self.socks.append(s)

    def _accept(self):
        while not self.stopping:
            try:
                down, _ = self.ls.accept()
            except OSError:
                return
            self._track(down)
            threading.Thread(target=self._serve, args=(down,), daemon=True).start()

    def _serve(self, down):
        # The preamble first: it says which channel and migration this is.
        pre = b""
        down.settimeout(10)
        try:
            while len(pre) < PREAMBLE_LEN:
                b = down.recv(PREAMBLE_LEN - len(pre))
                if not b:
                    break
                pre += b
        except OSError:
            pass
        if len(pre) < PREAMBLE_LEN or pre[:8] != b"HMIGCHAN":
            _reset(down)
            return
        session, kind, _, security = struct.unpack("<QIII", pre[8:28])
        if security and not self.keylog:
            raise RuntimeError("a TLS channel, and the relay has no key log to read it")
        with self.lock:
            if kind == BULK:
                self.gen += 1
            conn = _Conn(kind, session, max(self.gen, 1), security == 1)
        self.watch.event(dict(what="conn", kind=kind, gen=conn.gen))
        up = ns_socket(self.link.ns["s"])
        self._track(up)
        up.settimeout(self.UP_CONNECT_S)
        try:
            up.connect((self.link.ip["d"], self.dst_port))
        except OSError:
            # Link down: the source sees its connection reset, as it would
            # see its own connect fail, and tries again.
            _reset(up)
            _reset(down)
            self.watch.event(dict(what="closed", side="link", kind=kind, gen=conn.gen))
            return
        up.settimeout(None)
        down.settimeout(None)
        _nodelay(up, down)
        _keepalive(up, self.dead_ms)
        try:
            up.sendall(pre)
        except OSError:
            _reset(up)
            _reset(down)
            return
        for args in ((conn, down, up, SD), (conn, up, down, DS)):
            threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, conn, rd, wr, d):
        st = _TlsStream(d, self.keylog, conn.hello) if conn.tls else _Stream()
        dropping = holding = False
        while True:
            try:
                data = rd.recv(1 << 18)
            except OSError:
                # The source reset its connection, or the link's died.
                self.watch.event(dict(what="closed", side="s" if d == SD else "link",
                                      kind=conn.kind, gen=conn.gen))
                _reset(wr)
                return
            if not data:
                self.watch.event(dict(what="closed", side="s" if d == SD else "d",
                                      kind=conn.kind, gen=conn.gen))
                try:
                    wr.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                for ev in st.feed(memoryview(data)):
                    if ev[0] == "rec":
                        if not self.stopping:
                            v = self.watch.event(dict(what="rec", d=d, kind=conn.kind,
                                                      gen=conn.gen, type=ev[1], flags=ev[2],
                                                      len=ev[3]))
                            dropping = dropping or v == "drop"
                            holding = holding or (v == "cut" and d == DS)
                    elif not dropping:
                        if holding:
                            # Crossed as the link went down: in flight until
                            # it is back (never, if it never comes back).
                            self.link.wait_up()
                            holding = False
                        wr.sendall(ev[1])
            except OSError:
                _reset(rd)
                _reset(wr)
                return

    def close(self):
        self.stopping = True
        for s in [self.ls] + self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


def _nodelay(*socks):
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _keepalive(sock, dead_ms):
    """The relay's connection over the link dies as hmig's own would on a
    direct link (net_chan_set_keepalive): its error then resets the
    endpoint's connection, which would otherwise see a live relay."""
    probe_s = max(1, dead_ms // 2000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, dead_ms)


# ------------------------------------------------------------ the processes

def _die_with_parent():
    """In the child before exec: a test runner killed outright (SIGKILL)
    takes its hmig processes with it (the flag survives exec)."""
    PR_SET_PDEATHSIG = 1
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Side:
    """One hmig process in a namespace: its stdout, stderr and report."""

    def __init__(self, name, ns, argv, workdir, pass_fds=(), env=None):
        self.name = name
        self.out = os.path.join(workdir, name + ".out")
        self.errf = os.path.join(workdir, name + ".err")
        self.json = os.path.join(workdir, name + ".json")
        with open(self.out, "w") as out, open(self.errf, "w") as err:
            self.p = subprocess.Popen(["ip", "netns", "exec", ns] + argv + ["--json", self.json],
                                      stdout=out, stderr=err, pass_fds=pass_fds, env=env,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.p.pid  # ip netns exec execs: this is hmig's pid
        self.rc = None
        self.killed = False

    def signal(self, sig):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            self.killed = True

    def wait(self, timeout):
        try:
            self.rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.p.wait()
            self.rc = None
            raise AssertionError("%s hung: still running after %.0f s (killed)" % (self.name, timeout))
        return self.rc

    def running(self):
        return self.p.poll() is None

    @property
    def stderr(self):
        with open(self.errf) as f:
            return f.read()

    @property
    def report(self):
        try:
            with open(self.json) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def phases(self):
        """The report's timeline events, in order ("commit", "resumed", ...)."""
        r = self.report
        return [row["event"] for row in r["timeline"] if row.get("event")] if r else []


def stopped(pid):
    """Whether the process is stopped (SIGSTOP has taken effect)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False
