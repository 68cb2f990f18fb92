"""The program's methods, from `longattn list --json`: the model keeps no list of its own.

The program is LONGATTN_PROGRAM (set by `longattn model`), else build/longattn in the source tree."""

import functools
import json
import os
import subprocess

from .errors import BadInput

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def program():
    exe = os.environ.get("LONGATTN_PROGRAM") or os.path.join(ROOT, "build", "longattn")
    if not os.access(exe, os.X_OK):
        raise BadInput(f"cannot run the longattn program ({exe}) to list its methods: run the model as "
                       "`longattn model ...`, or set LONGATTN_PROGRAM to the program")
    return exe


@functools.lru_cache(maxsize=None)
def methods():
    """{name: traits} in the program's table order (layout, distributed, microbenchmark, exchange, ...)."""
    exe = program()
    r = subprocess.run([exe, "list", "--json"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BadInput(f"{exe} list --json failed (exit {r.returncode}): {r.stderr.strip()[:200]}")
    return {m["name"]: m for m in json.loads(r.stdout)["methods"]}


@functools.lru_cache(maxsize=None)
def attention():
    """Every method that computes attention (the microbenchmarks do not), in table order."""
    return tuple(n for n, m in methods().items() if not m["microbenchmark"])


@functools.lru_cache(maxsize=None)
def single():
    return frozenset(n for n in attention() if not methods()[n]["distributed"])


@functools.lru_cache(maxsize=None)
def distributed():
    return frozenset(n for n in attention() if methods()[n]["distributed"])


@functools.lru_cache(maxsize=None)
def rings():
    """Distributed methods whose traffic is the ring's send/receive of K/V shards alone (dist-usp adds
    its Ulysses exchange; predict.py composes it from both)."""
    return frozenset(n for n in distributed() if methods()[n]["exchange"] == "send_recv" and n != "dist-usp")


@functools.lru_cache(maxsize=None)
def comm_ops():
    """{microbenchmark: the operation it times} ("comm-all-gather": "all_gather", ...)."""
    return {n: m["exchange"] for n, m in methods().items() if m["microbenchmark"]}
