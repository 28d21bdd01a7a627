#!/bin/bash
# pvh-suspend-agent DOMID: answer libxl's suspend request on behalf of a PVH
# guest that has no xenbus driver (hmigt), so that `xl migrate` can move it.
#
# For a PVH guest libxl always suspends cooperatively: it writes "suspend" to
# the guest's xenstore node control/shutdown and waits up to 60 s for the
# guest to acknowledge (change the node) and then shut itself down with reason
# "suspend".  hmigt makes no hypercalls and reads no xenstore, so xl migrate
# of it would time out.  This agent does both steps from dom0: it clears the
# node and calls xc_domain_shutdown(SHUTDOWN_suspend) -- what libxl itself
# does for an HVM guest without PV drivers.  Xen pauses the domain there; the
# guest never notices and runs on at the destination where it stopped.
#
# It waits with a xenstore watch, so it reacts within milliseconds; it exits
# after one suspend.  Python through ctypes (dom0 has python3 for the Xen
# tools, and no Xen Python bindings).
exec python3 - "$@" <<'EOF'
import ctypes, ctypes.util, sys, time

SHUTDOWN_SUSPEND = 2
domid = int(sys.argv[1])
node = b"/local/domain/%d/control/shutdown" % domid


def lib(*names):
    for n in names:
        try:
            return ctypes.CDLL(n, use_errno=True)
        except OSError:
            pass
    sys.exit("pvh-suspend-agent: cannot load any of %s" % (names,))


xs = lib("libxenstore.so.4", ctypes.util.find_library("xenstore") or "libxenstore.so")
xc = lib("libxenctrl.so.4.17", ctypes.util.find_library("xenctrl") or "libxenctrl.so")
libc = lib("libc.so.6")
xs.xs_open.restype = ctypes.c_void_p
xs.xs_open.argtypes = [ctypes.c_ulong]
xs.xs_read.restype = ctypes.c_void_p
xs.xs_read.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_uint)]
xs.xs_write.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_uint]
xs.xs_watch.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
xs.xs_read_watch.restype = ctypes.c_void_p
xs.xs_read_watch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
xc.xc_interface_open.restype = ctypes.c_void_p
xc.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
xc.xc_domain_shutdown.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int]
libc.free.argtypes = [ctypes.c_void_p]

h = xs.xs_open(0)
xch = xc.xc_interface_open(None, None, 0)
if not h or not xch:
    sys.exit("pvh-suspend-agent: cannot open xenstore or libxenctrl")
if not xs.xs_watch(h, node, b"agent"):
    sys.exit("pvh-suspend-agent: cannot watch %s" % node.decode())
print("pvh-suspend-agent: watching %s" % node.decode(), flush=True)


def value():
    n = ctypes.c_uint()
    p = xs.xs_read(h, 0, node, ctypes.byref(n))
    if not p:
        return None
    v = ctypes.string_at(p, n.value)
    libc.free(p)
    return v


while True:
    n = ctypes.c_uint()
    ev = xs.xs_read_watch(h, ctypes.byref(n))  # blocks; the first event fires at once
    if ev:
        libc.free(ev)
    if value() == b"suspend":
        break
xs.xs_write(h, 0, node, b"", 0)
rc = xc.xc_domain_shutdown(xch, domid, SHUTDOWN_SUSPEND)
print("pvh-suspend-agent: domain %d acknowledged and suspended at %.6f (rc %d)"
      % (domid, time.time(), rc), flush=True)
EOF
