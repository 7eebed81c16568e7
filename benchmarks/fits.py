"""What the report benchmarks (benchmarks/quality.py, benchmarks/guidance.py) share: their training runs, the
checkpoints given instead, the fits' threads, the report's command line and entry, and its figures.

A run is `python -m training fit -c CONFIG [overrides]` in a subprocess, writing under <work_dir>/runs/NAME (its
log in fit.log, its command, wall time and steps in fit.json); a checkpoint can instead be given (--ckpt
NAME=PATH) or reused from an earlier run in the same folder (--reuse). The command line a report prints, in its
tables and as its figure's title, names paths relative to the repository root, so that they read the same on
every machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FIT_OVERRIDES = ("--trainer.limit_val_batches=0", "--samples.every_n_steps=0", "--trainer.enable_progress_bar=false")


@dataclass
class Training:
    """One model's checkpoint and how it came to be: command and wall seconds of the fit (None when given or
    reused without a record), the optimiser steps the checkpoint records, and whether it was reused."""

    config: str
    checkpoint: str
    command: list[str] | None = None
    wall_s: float | None = None
    steps: int | None = None
    reused: bool = False


def last_checkpoint(root: Path) -> Path | None:
    """The newest `last.ckpt` under root/lightning_logs (None if there is none)."""
    found = sorted(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def checkpoint_steps(path: str | Path) -> int | None:
    """The optimiser steps a Lightning checkpoint records (`global_step`), None if it records none."""
    step = torch.load(path, map_location="cpu", weights_only=True).get("global_step")
    return None if step is None else int(step)


def fit_command(config: str, root: Path, overrides: list[str]) -> list[str]:
    """`python -m training fit -c CONFIG` writing under root, validation and sample logging off (neither changes
    the weights), then `overrides` (--KEY=VALUE)."""
    return [sys.executable, "-m", "training", "fit", "-c", config, *overrides, f"--trainer.default_root_dir={root}",
            *FIT_OVERRIDES]


def train(name: str, config: str, overrides: list[str], work_dir: Path, environment: dict[str, str],
          given: str | None = None, reuse: bool = False) -> Training:
    """The checkpoint of run `name`: `given` (a path), reused from <work_dir>/runs/NAME (reuse), or fitted now.

    A failed fit ends the report with one line (its exit code, log and last lines)."""
    if given is not None:
        return Training(config, given, steps=checkpoint_steps(given), reused=True)
    root = work_dir / "runs" / name
    record = root / "fit.json"
    if reuse and last_checkpoint(root) is not None:
        stored = json.loads(record.read_text()) if record.is_file() else {}
        return Training(config, str(last_checkpoint(root)), stored.get("command"), stored.get("wall_s"),
                        stored.get("steps"), reused=True)
    root.mkdir(parents=True, exist_ok=True)
    command = fit_command(config, root, overrides)
    print(f"[{name}] {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    with open(root / "fit.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment, check=False)
    wall = time.perf_counter() - start
    checkpoint = last_checkpoint(root)
    if done.returncode != 0 or checkpoint is None:
        tail = (root / "fit.log").read_text(encoding="utf-8").strip().splitlines()[-5:]
        raise SystemExit(f"error: fitting {name} failed (exit {done.returncode}; log {root / 'fit.log'}): "
                         + " | ".join(tail))
    steps = checkpoint_steps(checkpoint)
    record.write_text(json.dumps({"command": command, "wall_s": wall, "steps": steps}, indent=2) + "\n")
    print(f"[{name}] {steps} steps in {wall:.1f} s -> {checkpoint}", flush=True)
    return Training(config, str(checkpoint), command, wall, steps)


def report_command(module: str, argv: list[str]) -> str:
    """The command line of a report, `python -m MODULE ARGV`, with paths under the working directory or the
    repository written relative to it (a report's table and figure show no machine's absolute paths)."""
    prefixes = sorted({f"{Path.cwd()}/", f"{ROOT}/"}, key=len, reverse=True)

    def relative(word: str) -> str:
        for prefix in prefixes:
            word = word.replace(prefix, "")
        return word

    return shlex.join(["python", "-m", module, *(relative(word) for word in argv)])


def parse_checkpoints(items: list[str], names: list[str]) -> dict[str, str]:
    """{name: path} from --ckpt NAME=PATH items; SystemExit (one line) for a name not in `names` or a missing file."""
    checkpoints = {}
    for item in items:
        name, equals, path = item.partition("=")
        if not equals or name not in names:
            raise SystemExit(f"error: --ckpt {item!r}: write NAME=PATH with NAME one of {', '.join(names)}")
        if not Path(path).is_file():
            raise SystemExit(f"error: --ckpt {item!r}: {path!r} does not exist; give a checkpoint of `fit`")
        checkpoints[name] = path
    return checkpoints


def pyplot(note: bool = True) -> Any:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib (the `dev` extra) is not installed; then, with
    note, one line says that no plot is drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if note:
            print("note: matplotlib is not installed, so no plot is drawn; `pip install -e \".[dev]\"` installs it "
                  "(the JSON and the tables are complete without it)", flush=True)
        return None
    return plt


def save_figure(figure: Any, path: Path, command: str) -> str:
    """Title a matplotlib figure with the report's command line (report_command), write it to path, close it."""
    import matplotlib.pyplot as plt

    figure.suptitle(textwrap.fill(command, 180), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


def thread_environment(threads: int | None) -> dict[str, str]:
    """The environment of the fits' subprocesses: this one's, with OMP / MKL threads = threads when given (and
    torch's threads in this process set to it)."""
    environment = dict(os.environ)
    if threads is not None:
        torch.set_num_threads(threads)
        environment.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return environment


def run_report(run: Callable[[Any, str], Any], arguments: Any, module: str, argv: list[str] | None) -> Any:
    """run(arguments, command) with the report's command line (report_command of `python -m module argv`, argv
    None: this process's); the library's one-line errors (a checkpoint, an option, a length) end it as
    `error: ...`."""
    command = report_command(module, sys.argv[1:] if argv is None else argv)
    try:
        return run(arguments, command)
    except ValueError as error:
        raise SystemExit(f"error: {' '.join(str(error).split())}") from None


def add_run_arguments(parser: argparse.ArgumentParser, name: str, ckpt_help: str, device_help: str) -> None:
    """The options every report benchmark takes: the fits' overrides (--steps, --fit_arg), the checkpoints given
    or reused (--ckpt, --reuse), where it runs (--threads, --device) and where it writes (--out, --work_dir,
    benchmarks/results/NAME[.json])."""
    parser.add_argument("--steps", type=int, help="training steps of every fit (default: the configs' 600)")
    parser.add_argument("--fit_arg", action="append", default=[], metavar="--KEY=VALUE",
                        help="an extra override for every fit command (repeatable)")
    parser.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH", help=ckpt_help)
    parser.add_argument("--reuse", action="store_true", help="reuse the last.ckpt of an earlier run in --work_dir")
    parser.add_argument("--threads", type=int, help="torch threads here and OMP/MKL threads of the fits")
    parser.add_argument("--device", default="cpu", help=device_help)
    parser.add_argument("--out", default=f"benchmarks/results/{name}.json", help="JSON written at the end")
    parser.add_argument("--work_dir", default=f"benchmarks/results/{name}", help="runs, samples, results.md, plots")


def check_at_least(arguments: argparse.Namespace, minimums: dict[str, int]) -> None:
    """SystemExit (one line naming the option) for an option below its minimum; an option left unset (None) is
    not checked."""
    for name, minimum in minimums.items():
        value = getattr(arguments, name)
        if value is not None and value < minimum:
            raise SystemExit(f"error: --{name} must be >= {minimum}, got {value}")


def write_report(report: Any, table: str, work_dir: Path, out: str) -> None:
    """Write the Markdown tables to <work_dir>/results.md and the report (a dataclass) as JSON to `out`, print the
    tables and the files written (the plots named in report.settings)."""
    (work_dir / "results.md").write_text(table, encoding="utf-8")
    Path(out).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    plots = [value for key, value in report.settings.items() if key.endswith("plot") and value]
    print(table)
    print("wrote " + ", ".join([out, str(work_dir / "results.md"), *plots]))
