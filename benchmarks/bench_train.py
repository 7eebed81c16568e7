"""Training-step speed and peak memory: diffusion steps against an AR step of the same trunk, and the Lightning
module in a Trainer against a hand-written PyTorch loop.

Run:  python -m benchmarks.bench_train --compare ar [--baseline-code /path/to/old/checkout]
      python -m benchmarks.bench_train --compare compile            # torch.compile of the sedd network
      python -m benchmarks.bench_train --compare lightning          # quick: tiny B=4 L=64, small B=1 L=32
      python -m benchmarks.bench_train --compare lightning --full   # tiny B=8 L=128, small B=8 L=1024

--compare ar (the default): one training step (t and x_t drawn, forward, loss, backward, fused AdamW step) at
the shapes of configs/sedd.yaml (DiT, absorbing chain, score entropy), configs/radd.yaml (RADDDenoiser,
lambda-DCE) and configs/sedd-uniform.yaml (DiT, uniform chain, geometric schedule), GPT-2 vocabulary, hidden
128, 2 layers, 4 heads, B = 8 at L = 32 and L = 128, against the step of `models.ARTransformer` with the same
trunk (embedding, 2 pre-LN blocks, one V-way head; its exact NLL on every position, `ARTransformer.nll`). Each
diffusion case runs with packed outputs (the network asked only for `loss.output_positions(x_t)`: "packed"),
with the full output ("full", `where=None`), and, given --baseline-code, the training command's step (packed
where the loss has output positions) with the package code of another checkout ("baseline": e.g. the commit
before a change; a checkout older than packed outputs must run as "full"). Every case is a fresh process with one
torch thread (--threads N for N) and glibc's retain setting (training/allocator.py, as the training command);
repeats are interleaved.
A run times AR_STEPS steps after its warm-up and keeps their mean: the packed step's cost follows the fraction
of masked positions, which varies from step to step with t (0.5 on average under the log-linear schedule;
the "rows" column is the measured fraction), so the mean, not the median, is the cost of training. The table
reports the median over repeats of each run's mean, its ratio to the AR step's, the median and range of the
per-repeat ratios (each run against the AR run of the same repeat: identical code runs in fresh processes
differ by up to ~15% on this machine), and peak RSS over the base after the imports (the machine may be
shared: note its load). Then, per shape, every case of the current code runs in one fresh process with the
steps interleaved round by round (`same_process_ratios`): the ratios without the process-to-process spread
(no memory figures there). JSON: benchmarks/results/train_vs_ar.json.

--compare compile: the sedd step at L = 32 (packed) eager, then with the network compiled (torch.compile,
inductor), then eager again, in one one-thread process; JSON: benchmarks/results/train_compile.json.

--compare lightning:

Both sides train the same network (`models.DiT` preset `tiny` or `small`, GPT-2 vocabulary + mask = 50,258
states, absorbing chain, log-linear schedule), with the same loss (`losses.ScoreEntropy`, mean / L), optimiser
(AdamW, warm-up + cosine LambdaLR), gradient clipping (norm 1) and EMA update (training/ema.py), on the same
fixed batch of random tokens:

- lightning: `training.module.DiffusionModule` fitted by `lightning.Trainer` (no logger, checkpoint or progress
  bar) for warmup + steps optimiser steps; the module draws each sequence's noise from its own seeded
  generator (evaluation/bounds.py seeded_noise) and logs its metrics through `self.log`;
- plain: the loop written out: one vectorised draw t ~ loss.sample_time(B), x_t ~ process.sample(x0, t),
  forward, backward, clip, step, scheduler step, EMA update.

A step is timed from the end of the previous step to the end of this one (the loader, hooks and logging
included; `torch.cuda.synchronize()` on a GPU); the table reports the median over `steps` after `warmup`
steps, and tokens/s = B L / median. Every case runs `--repeats` times (default 2), interleaved with the others;
the run with the smallest median is reported (the machine may be shared) and all medians are kept in the JSON.
Memory: each case runs in a fresh subprocess; peak RSS is the kernel's
VmHWM (/proc/self/status) at the end, and "over base" subtracts VmRSS after the imports (torch, plus
lightning on that side), before the model is built. On a GPU, also torch.cuda.max_memory_allocated. GPU cases
run in bf16 autocast on both sides (Trainer precision "bf16-mixed"); CPU cases in float32.

Allocator: every case runs with glibc's default malloc ("default") and again with freed memory kept in the
process ("retain": MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set to 1 GiB). By default glibc returns
large freed blocks to the kernel, so the gradients and AdamW's foreach temporaries are page-faulted in again
every step, and how much depends on the allocator's history (its dynamic mmap threshold): the default's step
times vary between runs (1.1 to 1.7 s for the same small-model step in our runs, the plain loop once 1.5x
slower than Lightning), while with "retain" both sides take the same time, 1.5 to 1.9x less.
Results: printed as a table and written to benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

import ctmc
import losses
import models
from training.ema import frozen_copy, update_average
from training.lr_schedule import warmup_decay

RETAIN = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
VOCAB = 50257  # GPT-2; the absorbing chain adds the mask state
LR, WARMUP_LR_STEPS, EMA_DECAY, CLIP = 3e-4, 10, 0.9999, 1.0
QUICK = {"tiny": {"batch": 4, "length": 64, "steps": 6, "warmup": 2},
         "small": {"batch": 1, "length": 32, "steps": 6, "warmup": 2}}
FULL = {"tiny": {"batch": 8, "length": 128, "steps": 20, "warmup": 3},
        "small": {"batch": 8, "length": 1024, "steps": 10, "warmup": 3}}


def status_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def network_factory(preset: str, length: int) -> partial:
    """num_states -> the DiT of `preset` with SEDD's absorbing parameterisation, accepting `length` tokens."""
    return partial(models.DiT.from_preset, preset, absorbing_parameterization=True, max_length=length)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(preset: str, batch: int, length: int, total_steps: int, device: str) -> list[float]:
    """Per-step seconds of the hand-written loop."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    loss_fn = losses.ScoreEntropy(process)
    network = network_factory(preset, length)(process.num_states).to(device)
    ema = frozen_copy(network)
    optimizer = torch.optim.AdamW(network.parameters(), lr=LR, weight_decay=0.0)  # the module's defaults
    factor = partial(warmup_decay, warmup_steps=WARMUP_LR_STEPS, total_steps=total_steps, decay="cosine",
                     min_ratio=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    x0 = torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0)).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    time_generator = torch.Generator().manual_seed(1)  # sample_time draws on the CPU
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    times = []
    last = time.perf_counter()
    for _ in range(total_steps):
        t = loss_fn.sample_time(batch, device=device, generator=time_generator)
        x_t = process.sample(x0, t[:, None], generator=generator)
        with autocast:
            output = network(x_t, process.total(t))
        nats = loss_fn(output.float(), x0, x_t, t)
        (nats.mean() / length).backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        update_average(ema, network, EMA_DECAY)
        synchronize(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def lightning_fit(preset: str, batch: int, length: int, total_steps: int, device: str) -> list[float]:
    """Per-step seconds of DiffusionModule under lightning.Trainer.fit."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from training.module import DiffusionModule

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.last = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            self.last = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            synchronize(device)
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    module = DiffusionModule(
        VOCAB, network=network_factory(preset, length), loss=losses.ScoreEntropy, lr=LR,
        warmup_steps=WARMUP_LR_STEPS, ema_decay=EMA_DECAY,
    )
    x0 = torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))
    loader = DataLoader([x0] * total_steps, batch_size=None)  # the same batch every step
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_steps=total_steps,
        precision="bf16-mixed" if device == "cuda" else "32-true", gradient_clip_val=CLIP, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.times


def run_case(preset: str, impl: str, device: str, batch: int, length: int, steps: int, warmup: int) -> dict:
    """One measurement, in this (fresh) process."""
    if impl == "lightning":
        import lightning.pytorch  # noqa: F401  (imported before the baseline RSS, as part of that side's cost)
    base_kib = status_kib("VmRSS")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run = lightning_fit if impl == "lightning" else plain_loop
    times = run(preset, batch, length, warmup + steps, device)[warmup:]
    median = statistics.median(times)
    row = {
        "model": preset, "impl": impl, "device": device, "batch": batch, "length": length, "steps": len(times),
        "median_step_s": median, "tokens_per_s": batch * length / median,
        "peak_rss_mib": status_kib("VmHWM") / 1024, "peak_over_base_mib": (status_kib("VmHWM") - base_kib) / 1024,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        row["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["gpu"] = torch.cuda.get_device_name()
    return row

AR_SHAPES = {"L32": (8, 32), "L128": (8, 128)}  # (B, L): the configs' blocks, and the issue's longer blocks
AR_CASES = {  # name: (chain, network, loss); the configs' networks with hidden 128, 2 layers, 4 heads
    "sedd": ("absorbing", "DiT", "ScoreEntropy"),
    "radd": ("absorbing", "RADDDenoiser", "LambdaDCE"),
    "uniform": ("uniform", "DiT", "ScoreEntropy"),
}
AR_STEPS = {"L32": (2, 16), "L128": (2, 10)}  # (warm-up, timed) steps per run
SAME_PROCESS_ROUNDS = {"L32": 24, "L128": 12}  # timed rounds of every case after 2 warm-up rounds


def diffusion_step(
    case: str, variant: str, batch: int, length: int, compile_network: bool = False
) -> Callable[[], float]:
    """One diffusion training step of AR_CASES[case] as a function (t and x_t drawn, forward, loss, backward,
    fused AdamW step) that returns the fraction of the B L positions whose output it computed. variant "packed"
    asks the network for loss.output_positions(x_t) only (where=), "full" for the whole output, "baseline" as
    "packed" (the caller points PYTHONPATH at another checkout). compile_network: nn.Module.compile() first
    (torch.compile's default backend); the first steps then include the compilation."""
    chain, network_name, loss_name = AR_CASES[case]
    if chain == "absorbing":
        process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    else:
        process = ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.Geometric(sigma_min=1e-4, sigma_max=20.0))
    loss_fn = getattr(losses, loss_name)(process)
    size = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "max_length": length}
    if network_name == "DiT":
        network = models.DiT(process.num_states, cond_dim=64, absorbing_parameterization=chain == "absorbing", **size)
    else:
        network = models.RADDDenoiser(VOCAB, **size)
    if compile_network:
        network.compile()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
    x0 = torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)

    def step() -> float:
        t = loss_fn.sample_time(batch, generator=generator)
        x_t = process.sample(x0, t[:, None], generator=generator)
        where = loss_fn.output_positions(x_t) if variant != "full" else None
        sigma = process.total(t)
        output = network(x_t, sigma) if where is None else network(x_t, sigma, where=where)
        (loss_fn(output, x0, x_t, t).mean() / length).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return 1.0 if where is None else float(where.float().mean())

    return step


def ar_step(batch: int, length: int) -> Callable[[], float]:
    """The AR step as a function: ARTransformer (hidden 128, 2 layers, 4 heads), exact NLL of every token,
    backward, fused AdamW step. Returns 1.0 (every position's output is computed)."""
    network = models.ARTransformer(VOCAB, hidden_size=128, num_layers=2, num_heads=4, max_length=length)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
    x0 = torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))

    def step() -> float:
        (network.nll(x0).mean() / length).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return 1.0

    return step


def timed(step: Callable[[], float], total_steps: int, rows: list[float] | None = None) -> list[float]:
    """Seconds of each of total_steps calls of step; rows, if given, receives what each call returns."""
    times = []
    for _ in range(total_steps):
        start = time.perf_counter()
        fraction = step()
        times.append(time.perf_counter() - start)
        if rows is not None:
            rows.append(fraction)
    return times


def diffusion_step_times(
    case: str, variant: str, batch: int, length: int, total_steps: int, compile_network: bool = False,
    rows: list[float] | None = None,
) -> list[float]:
    """Per-step seconds of `diffusion_step`; rows, if given, receives each step's fraction of computed rows."""
    return timed(diffusion_step(case, variant, batch, length, compile_network), total_steps, rows)


def ar_step_times(batch: int, length: int, total_steps: int) -> list[float]:
    """Per-step seconds of `ar_step`."""
    return timed(ar_step(batch, length), total_steps)


def same_process_ratios(shape: str, rounds: int) -> dict:
    """Every case of the --compare ar plan for one shape in this (one-thread) process, steps interleaved round
    by round (AR, sedd packed, ...), so that they share the process's memory state and any slow phase of the
    machine. Returns {"case variant": {"mean_step_s", "ratio_to_ar", "rows_fraction"}}; the first 2 rounds
    are warm-up."""
    torch.set_num_threads(case_threads())
    batch, length = AR_SHAPES[shape]
    plan = {"ar full": ar_step(batch, length)}
    for case in AR_CASES:
        for variant in ("packed", "full"):
            if not (case == "uniform" and variant == "packed"):
                plan[f"{case} {variant}"] = diffusion_step(case, variant, batch, length)
    times: dict[str, list[float]] = {name: [] for name in plan}
    rows: dict[str, list[float]] = {name: [] for name in plan}
    for _ in range(rounds + 2):
        for name, step in plan.items():
            times[name] += timed(step, 1, rows[name])
    ar = statistics.mean(times["ar full"][2:])
    return {name: {"mean_step_s": statistics.mean(t[2:]), "ratio_to_ar": statistics.mean(t[2:]) / ar,
                   "rows_fraction": statistics.mean(rows[name][2:])} for name, t in times.items()}


def case_threads() -> int:
    """torch threads of a --compare ar case process: OMP_NUM_THREADS, which compare_with_ar sets (--threads)."""
    return int(os.environ.get("OMP_NUM_THREADS", "1"))


def run_ar_case(case: str, variant: str, shape: str) -> dict:
    """One --compare ar measurement, in this (fresh) process."""
    torch.set_num_threads(case_threads())
    batch, length = AR_SHAPES[shape]
    warmup, steps = AR_STEPS[shape]
    base_kib = status_kib("VmRSS")
    rows: list[float] = []
    if case == "ar":
        times = ar_step_times(batch, length, warmup + steps)[warmup:]
    else:
        times = diffusion_step_times(case, variant, batch, length, warmup + steps, rows=rows)[warmup:]
    return {"case": case, "variant": variant, "shape": shape, "batch": batch, "length": length, "steps": steps,
            "mean_step_s": statistics.mean(times), "median_step_s": statistics.median(times),
            "rows_fraction": statistics.mean(rows[warmup:]) if rows else 1.0,
            "peak_over_base_mib": (status_kib("VmHWM") - base_kib) / 1024}


def compare_with_ar(repeats: int, baseline_code: str | None, json_path: str, threads: int = 1) -> None:
    """Run every (case, variant, shape) `repeats` times, interleaved, and print the table against AR."""
    variants = ["packed", "full"] + (["baseline"] if baseline_code else [])
    plan = [("ar", "full")] + [(case, v) for case in AR_CASES for v in variants
                               if not (case == "uniform" and v == "packed")]  # uniform: nothing to pack
    script = str(Path(__file__).resolve())
    here = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **RETAIN, "OMP_NUM_THREADS": str(threads)}
    runs: dict[tuple[str, str, str], list[dict]] = {}
    load = []
    for repeat in range(repeats):
        for shape in AR_SHAPES:
            for case, variant in plan:
                code = baseline_code if variant == "baseline" else here
                done = subprocess.run([sys.executable, script, "--run-ar-case", case, variant, shape],
                                      capture_output=True, text=True, env={**env, "PYTHONPATH": code}, cwd=code)
                if done.returncode != 0:
                    raise RuntimeError(f"{case} {variant} {shape} failed: {done.stderr.strip()[-500:]}")
                runs.setdefault((shape, case, variant), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                load.append(os.getloadavg()[0])
                print(f"done {repeat} {shape} {case} {variant}", file=sys.stderr, flush=True)
    ar_runs = {shape: [r["mean_step_s"] for r in runs[(shape, "ar", "full")]] for shape in AR_SHAPES}
    rows = []
    for measured in runs.values():
        means = [r["mean_step_s"] for r in measured]
        # Each repeat's ratio pairs the case with the AR run of the same repeat (the nearest in time).
        paired = [mean / ar for mean, ar in zip(means, ar_runs[measured[0]["shape"]], strict=True)]
        rows.append({**measured[0], "mean_step_s": statistics.median(means), "mean_step_s_of_runs": means,
                     "median_step_s_of_runs": [r["median_step_s"] for r in measured], "ratio_to_ar_of_runs": paired,
                     "rows_fraction": statistics.mean(r["rows_fraction"] for r in measured),
                     "peak_over_base_mib": statistics.median(r["peak_over_base_mib"] for r in measured)})
        del rows[-1]["median_step_s"]
    ar = {row["shape"]: row["mean_step_s"] for row in rows if row["case"] == "ar"}
    print(f"{'shape':<7}{'case':<9}{'variant':<10}{'B x L':>9}{'rows':>6}{'step ms':>9}{'x AR':>7}"
          f"{'paired x AR (min-max)':>24}{'peak over base MiB':>20}")
    for row in rows:
        row["ratio_to_ar"] = row["mean_step_s"] / ar[row["shape"]]
        paired = row["ratio_to_ar_of_runs"]
        print(f"{row['shape']:<7}{row['case']:<9}{row['variant']:<10}{row['batch']:>4} x{row['length']:>4}"
              f"{row['rows_fraction']:>6.2f}{1e3 * row['mean_step_s']:>9.1f}{row['ratio_to_ar']:>7.2f}"
              f"{statistics.median(paired):>12.2f} ({min(paired):.2f}-{max(paired):.2f})"
              f"{row['peak_over_base_mib']:>20.0f}")
    same_process = {}
    for shape in AR_SHAPES:  # the current code only, every case in one fresh process per shape
        done = subprocess.run([sys.executable, script, "--run-same-process", shape], capture_output=True, text=True,
                              env={**env, "PYTHONPATH": here}, cwd=here)
        if done.returncode != 0:
            raise RuntimeError(f"same-process {shape} failed: {done.stderr.strip()[-500:]}")
        same_process[shape] = json.loads(done.stdout.strip().splitlines()[-1])
        load.append(os.getloadavg()[0])
    print("the same, every case in one process per shape, steps interleaved (mean step, x AR):")
    for shape, cases in same_process.items():
        print(f"  {shape}: " + ", ".join(f"{name} {1e3 * c['mean_step_s']:.0f} ms {c['ratio_to_ar']:.2f}x"
                                          for name, c in cases.items()))
    print(f"load average (1 min) during the run: min {min(load):.1f}, median {statistics.median(load):.1f}, "
          f"max {max(load):.1f} on {os.cpu_count()} cores")
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"vocab": VOCAB, "repeats": repeats, "baseline_code": baseline_code, "threads": threads,
               "load_average": load, "rows": rows, "same_process": same_process}
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")


def compare_compile(steps: int, json_path: str) -> None:
    """The sedd case at L = 32 (packed, one thread) eager, compiled, eager again, in one process: per-step times
    of the compiled run (its first steps include compilation and a recompilation for the varying packed rows)."""
    torch.set_num_threads(1)
    batch, length = AR_SHAPES["L32"]
    runs = []
    for compiled in (False, True, False):
        times = diffusion_step_times("sedd", "packed", batch, length, steps, compile_network=compiled)
        runs.append({"compiled": compiled, "step_s": times, "median_after_3_s": statistics.median(times[3:])})
        print(f"{'compiled' if compiled else 'eager':<9} first 3 steps {' '.join(f'{x:.1f}' for x in times[:3])} s, "
              f"median of the rest {1e3 * runs[-1]['median_after_3_s']:.0f} ms", flush=True)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"case": "sedd packed L32", "runs": runs}, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=["ar", "lightning", "compile"], default="ar",
                        help="ar: diffusion steps against the AR step; lightning: the module against a plain loop; "
                             "compile: the sedd step eager, compiled, eager")
    parser.add_argument("--baseline-code", help="--compare ar: also time the training step with this checkout's code")
    parser.add_argument("--threads", type=int, default=1,
                        help="--compare ar: torch threads per case (default 1, as the issue's measurements)")
    parser.add_argument("--run-ar-case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--run-same-process", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help="tiny B=8 L=128, small B=8 L=1024")
    parser.add_argument("--models", nargs="+", default=["tiny", "small"], choices=sorted(QUICK))
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per case (ar: 5, median of the runs reported; lightning: 2, the fastest reported)")
    parser.add_argument("--json", default=None, help="default benchmarks/results/train_vs_ar.json or train.json")
    parser.add_argument("--run-case", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_ar_case:
        print(json.dumps(run_ar_case(*args.run_ar_case)))
        return
    if args.run_same_process:
        print(json.dumps(same_process_ratios(args.run_same_process, SAME_PROCESS_ROUNDS[args.run_same_process])))
        return
    if args.compare == "compile":
        compare_compile(12, args.json or "benchmarks/results/train_compile.json")
        return
    if args.compare == "ar":
        compare_with_ar(args.repeats or 5, args.baseline_code, args.json or "benchmarks/results/train_vs_ar.json",
                        args.threads)
        return
    args.repeats = args.repeats or 2
    args.json = args.json or "benchmarks/results/train.json"
    if args.run_case:
        preset, impl, device, *numbers = args.run_case
        print(json.dumps(run_case(preset, impl, device, *map(int, numbers))))
        return
    sizes = FULL if args.full else QUICK
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    runs: dict[tuple[str, str, str, str], list[dict]] = {}
    for repeat in range(args.repeats):  # interleaved, so that a burst of load on a shared machine hits one run
        for device in devices:
            for preset in args.models:
                size = sizes[preset]
                for allocator, extra in (("default", {}), ("retain", RETAIN)):
                    for impl in ("lightning", "plain"):
                        command = [sys.executable, "-m", "benchmarks.bench_train", "--run-case", preset, impl, device,
                                   *(str(size[key]) for key in ("batch", "length", "steps", "warmup"))]
                        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **extra})
                        case = {"model": preset, "impl": impl, "device": device, "allocator": allocator}
                        if done.returncode != 0:
                            row = {**case, "skipped": (done.stderr.strip().splitlines() or ["failed"])[-1][:100]}
                        else:
                            row = {**case, **json.loads(done.stdout.strip().splitlines()[-1])}
                        runs.setdefault((device, preset, allocator, impl), []).append(row)
                        print(f"done {repeat} {device} {preset} {allocator} {impl}", file=sys.stderr, flush=True)
    rows = []
    for measured in runs.values():  # the least disturbed run of each case, with every run's median kept
        good = [row for row in measured if "skipped" not in row]
        if not good:
            rows.append(measured[0])
            continue
        best = min(good, key=lambda row: row["median_step_s"])
        rows.append({**best, "median_step_s_of_runs": [row["median_step_s"] for row in good]})
    print(f"{'device':<7}{'model':<7}{'malloc':<9}{'impl':<10}{'B x L':>10}{'median ms':>11}{'tokens/s':>10}"
          f"{'peak RSS MiB':>14}{'over base':>11}")
    for row in rows:
        head = f"{row['device']:<7}{row['model']:<7}{row['allocator']:<9}{row['impl']:<10}"
        if "skipped" in row:
            print(f"{head}  skipped: {row['skipped']}")
            continue
        print(f"{head}{row['batch']:>5} x{row['length']:>4}"
              f"{1e3 * row['median_step_s']:>11.1f}{row['tokens_per_s']:>10.1f}{row['peak_rss_mib']:>14.0f}"
              f"{row['peak_over_base_mib']:>11.0f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"full": args.full, "vocab": VOCAB, "repeats": args.repeats, "rows": rows}
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
