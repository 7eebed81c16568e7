"""The training command's malloc setting (training/allocator.py), observed in fresh processes.

Reference: glibc's behaviour itself. A freed 256 MiB block leaves the resident set under the default malloc
(the block was mmapped and is unmapped on free) and stays resident under the retain setting; the
command (cli.fit.console) applies it before it builds anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import ctypes
from pathlib import Path
from training.allocator import retain_freed_memory
retain_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def rss_mib():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

size = 256 * 2**20
block = libc.malloc(size)
ctypes.memset(block, 1, size)  # touch every page
held = rss_mib()
libc.free(block)
print(held - rss_mib())
"""


def _released_mib(**environment: str) -> float:
    """MiB returned to the kernel when the probe frees its block, after retain_freed_memory()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "CTMC_MALLOC"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                          env={**env, **environment}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


def test_retain_keeps_freed_memory_unless_opted_out():
    assert _released_mib() < 16  # retain: the freed block stays in the process for the next step
    assert _released_mib(CTMC_MALLOC="default") > 200  # glibc's default: unmapped on free


def test_bad_opt_out_value_is_refused(monkeypatch):
    from training.allocator import retain_freed_memory

    monkeypatch.setenv("CTMC_MALLOC", "bogus")
    with pytest.raises(ValueError, match="CTMC_MALLOC must be 'retain' or 'default', got 'bogus'"):
        retain_freed_memory()
    monkeypatch.setenv("CTMC_MALLOC", "default")
    assert retain_freed_memory() == "default"
    monkeypatch.delenv("CTMC_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert retain_freed_memory() == "environment"


def test_the_training_command_applies_it_before_anything_else(monkeypatch):
    import cli.main as cli

    calls = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: calls.append("malloc"))
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 0)
    assert cli.console() == 0
    assert calls == ["malloc", "main"]
