"""A digitcore server for a test, in this process or as `digitcore serve`, stopped after
the block (also when it fails), on an ephemeral loopback port."""

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time

from digitcore.serve import make_server


@contextlib.contextmanager
def running_server(net, **kwargs):
    """make_server(net, "127.0.0.1", 0, **kwargs) answering on a thread of its own."""
    srv = make_server(net, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@contextlib.contextmanager
def serve_process(args, env=None, timeout=30):
    """`digitcore serve ARGS` (one kernel thread unless `env` says otherwise): yields
    (process, the URL it printed), killed after the block unless the block ended it, and
    its pipes read to the end.

    Its stdout is read on a thread of its own up to the URL, so that a server that hangs
    before printing it fails the test after `timeout` seconds instead of blocking it in
    readline; the rest is left to the block (proc.communicate())."""
    env = dict(os.environ if env is None else env)
    env.setdefault("DIGITCORE_NUM_THREADS", "1")
    proc = subprocess.Popen([sys.executable, "-m", "digitcore", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
            if "http://" in line:
                break
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, _read_url(proc, lines, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(30)  # (done at the URL, or at the end of stdout of a killed process)
        proc.communicate()


def _read_url(proc, lines, timeout):
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if "http://" in line:
            return line[line.index("http://"):].split()[0]
    proc.kill()
    raise AssertionError(f"no URL printed within {timeout} s; stderr: {proc.stderr.read()}")


def port_of(url):
    return int(url.rstrip("/").rsplit(":", 1)[1])
