"""A digitcore server for a test, in this process or as `digitcore serve`, stopped after
the block (also when it fails), on an ephemeral loopback port."""

import contextlib
import os
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
    its pipes read to the end."""
    env = dict(os.environ if env is None else env)
    env.setdefault("DIGITCORE_NUM_THREADS", "1")
    proc = subprocess.Popen([sys.executable, "-m", "digitcore", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield proc, _read_url(proc, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _read_url(proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "http://" in line:
            return line[line.index("http://"):].split()[0]
    proc.kill()
    raise AssertionError(f"no URL printed; stderr: {proc.stderr.read()}")


def port_of(url):
    return int(url.rstrip("/").rsplit(":", 1)[1])
