"""Benchmark workers: each system timed in a process of its own, spoken to over pipes.

A worker is this same script started with worker arguments; it answers each JSON line
written to its stdin with one JSON line on its stdout, until it reads {"quit": true}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "DIGITCORE_NUM_THREADS")


def worker_env(threads, drop_prefix=None):
    """This process's environment with every thread pool set to `threads` (less the
    variables starting with `drop_prefix`)."""
    env = {k: v for k, v in os.environ.items()
           if drop_prefix is None or not k.startswith(drop_prefix)}
    for k in THREAD_VARS:
        env[k] = str(threads)
    return env


class Worker:
    """`python SCRIPT *args` in `cwd` with `env`, answering one JSON line per request."""

    def __init__(self, script, args, env, cwd):
        self.p = subprocess.Popen([sys.executable, str(script), *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env, cwd=str(cwd))

    def read(self):
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise SystemExit(f"worker {self.p.args[2:]} died (exit {self.p.returncode})")
        return json.loads(line)

    def ask(self, obj=None):
        self.p.stdin.write(json.dumps({} if obj is None else obj) + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self):
        try:
            self.p.stdin.write(json.dumps({"quit": True}) + "\n")
            self.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.p.wait()
