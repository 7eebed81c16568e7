"""Benchmark: ctmc transitions against scipy.linalg.expm, in one run.

For n in {8, 64, 512} and each of Dense (random generator), Uniform and Absorbing: `transition(t)` vs
`scipy.linalg.expm(t Q)`, and `transition_from(x, t[:, None])` on x of shape (8, 128) vs expm at the 8 times
followed by row gathering. At n = 50,258 (GPT-2 vocabulary + mask): Uniform/Absorbing `transition_from` and
`sample` on x of shape (8, 1024); scipy would need a 50,258^2 matrix and is reported as n/a.
Times are medians of timeit repeats (one call per repeat), in milliseconds, float64 for n <= 512 and float32
at n = 50,258. Writes benchmarks/results/transition.json and prints a table.

    python -m benchmarks.bench_transition
"""

from __future__ import annotations

import json
import platform
import statistics
import timeit
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

import ctmc

RESULTS = Path(__file__).parent / "results" / "transition.json"
SMALL_SIZES = (8, 64, 512)
GPT2_STATES = 50258


def median_ms(function, repeat: int) -> float:
    function()  # warm-up
    return 1e3 * statistics.median(timeit.Timer(function).repeat(repeat=repeat, number=1))


def random_dense(n: int, seed: int = 0) -> ctmc.Dense:
    rng = np.random.default_rng(seed)
    rates = rng.exponential(size=(n, n))
    np.fill_diagonal(rates, 0.0)
    return ctmc.Dense(rates - np.diag(rates.sum(axis=1)))


def small_cases(repeat: int) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for n in SMALL_SIZES:
        repeat_n = repeat if n < 512 else 3  # scipy needs ~5 s per call here
        for rate_matrix in (random_dense(n), ctmc.Uniform(n), ctmc.Absorbing(n - 1)):
            q = rate_matrix.matrix().numpy()
            t = torch.rand(8, generator=generator, dtype=torch.float64) * 2.0
            x = torch.randint(0, n, (8, 128), generator=generator)
            t0 = t[0]
            rows.append(
                {
                    "chain": type(rate_matrix).__name__,
                    "n": n,
                    "op": "transition",
                    "shape": "()",
                    "ctmc_ms": median_ms(lambda rm=rate_matrix, t0=t0: rm.transition(t0), repeat_n),
                    "scipy_ms": median_ms(lambda q=q, t0=float(t0): scipy.linalg.expm(t0 * q), repeat_n),
                }
            )

            times, ids = t.numpy(), x.numpy()

            def scipy_rows(q=q, times=times, ids=ids):
                return np.stack([scipy.linalg.expm(tb * q)[xb] for tb, xb in zip(times, ids, strict=True)])

            rows.append(
                {
                    "chain": type(rate_matrix).__name__,
                    "n": n,
                    "op": "transition_from",
                    "shape": "(8, 128)",
                    "ctmc_ms": median_ms(lambda rm=rate_matrix, x=x, t=t: rm.transition_from(x, t[:, None]), repeat_n),
                    "scipy_ms": median_ms(scipy_rows, repeat_n),
                }
            )
    return rows


def gpt2_cases(repeat: int) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, GPT2_STATES - 1, (8, 1024), generator=generator)
    t = torch.rand(8, generator=generator)[:, None]
    for rate_matrix in (ctmc.Uniform(GPT2_STATES), ctmc.Absorbing(GPT2_STATES - 1)):
        for op in ("transition_from", "sample"):
            method = getattr(rate_matrix, op)
            rows.append(
                {
                    "chain": type(rate_matrix).__name__,
                    "n": GPT2_STATES,
                    "op": op,
                    "shape": "(8, 1024)",
                    "ctmc_ms": median_ms(lambda method=method: method(x, t), repeat),
                    "scipy_ms": None,
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'chain':<10} {'n':>6} {'op':<16} {'x shape':<10} {'ctmc ms':>10} {'scipy ms':>10} {'speed-up':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        scipy_ms = "n/a" if row["scipy_ms"] is None else f"{row['scipy_ms']:.3f}"
        speedup = "n/a" if row["scipy_ms"] is None else f"{row['scipy_ms'] / row['ctmc_ms']:.1f}x"
        lines.append(
            f"{row['chain']:<10} {row['n']:>6} {row['op']:<16} {row['shape']:<10} {row['ctmc_ms']:>10.3f} "
            f"{scipy_ms:>10} {speedup:>9}"
        )
    return "\n".join(lines)


def main() -> None:
    torch.manual_seed(0)
    rows = small_cases(repeat=7) + gpt2_cases(repeat=3)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "statistic": "median of timeit repeats, one call each, milliseconds",
    }
    RESULTS.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(format_table(rows))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
