"""Benchmark of the samplers: accuracy against NFE with exact scores, the lean absorbing step against a dense
one at GPT-2 vocabulary, and sampling throughput of a small network with and without caching.

    python -m benchmarks.bench_samplers            # --quick (default): a few minutes on 2 CPU cores
    python -m benchmarks.bench_samplers --full     # 20k samples, NFE up to 1024, 16 x 1024 tokens

Prints tables, writes benchmarks/results/samplers.json and docs/samplers_tv_vs_nfe.png.
Baselines in the same run: the TV of an exact sampler's histogram of the same size (noise floor), and a
dense Euler step that builds the full reverse-rate tensor and draws over V + 1 categories everywhere.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import torch
from torch import Tensor

import ctmc
import samplers
from ctmc.enumeration import ToyChain, total_variation  # the enumeration reference of the tests

ROOT = Path(__file__).resolve().parents[1]


def tv_table(num_samples: int, steps_list: list[int]) -> dict:
    """TV(histogram, p0) against NFE for every sampler, absorbing (exact score) and uniform (exact score)."""
    chains = {
        "absorbing": ctmc.ForwardProcess(ctmc.Absorbing(3), ctmc.LogLinear(1e-4)),
        "uniform": ctmc.ForwardProcess(ctmc.Uniform(3), ctmc.Geometric(1e-3, 12.0)),
    }
    results = {}
    for name, process in chains.items():
        toy = ToyChain(process, 3, 3)
        model = samplers.ConcreteScore(toy.score)
        exact = ctmc.sample_categorical(toy.p0.expand(num_samples, -1), torch.Generator().manual_seed(1))
        floor = total_variation(torch.bincount(exact, minlength=27).double() / num_samples, toy.p0)
        rows = {"noise_floor": floor}
        kinds = [samplers.EulerSampler, samplers.TauLeapingSampler, samplers.TweedieSampler]
        for cls in kinds:
            rows[cls.__name__] = []
            for steps in steps_list:
                result = cls(process, steps=steps, eps=1e-3).generate(
                    model, num_samples, 3, generator=torch.Generator().manual_seed(0)
                )
                rows[cls.__name__].append((result.nfe, total_variation(toy.histogram(result.tokens), toy.p0)))
        if name == "absorbing":
            rows["FirstHittingSampler"] = []
            for steps in (1, 2, None):
                result = samplers.FirstHittingSampler(process, steps=steps).generate(
                    model, num_samples, 3, generator=torch.Generator().manual_seed(0)
                )
                rows["FirstHittingSampler"].append((result.nfe, total_variation(toy.histogram(result.tokens), toy.p0)))
        results[name] = rows
        print(f"\nTV distance to p0 vs NFE, {name} chain (V=3, L=3, N={num_samples}); exact-sampler floor {floor:.4f}")
        for key, values in rows.items():
            if key != "noise_floor":
                print(f"  {key:20s} " + "  ".join(f"{nfe:>4d}:{tv:.4f}" for nfe, tv in values))
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (name, rows) in zip(axes, results.items(), strict=True):
        for key, values in rows.items():
            if key == "noise_floor":
                ax.axhline(values, color="gray", ls="--", label="exact sampler (noise floor)")
            else:
                nfe, tv = zip(*values, strict=True)
                ax.plot(nfe, tv, marker="o", label=key)
        ax.set(xscale="log", yscale="log", xlabel="NFE (network calls)", title=f"{name} chain, exact score")
    axes[0].set_ylabel("TV(sample histogram, p0)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def dense_euler_step(process: ctmc.ForwardProcess, score: Tensor, x: Tensor, t: float, dt: float) -> Tensor:
    """Baseline: full reverse-rate tensor (ctmc.reverse_rates), + one-hot, draw over all V + 1 states."""
    sigma = float(process.sigma(torch.tensor(t, dtype=torch.float64)))
    rates = ctmc.reverse_rates(process.rate_matrix, x, score, sigma)
    probs = (rates * dt).scatter_add_(-1, x[..., None], torch.ones_like(x, dtype=rates.dtype)[..., None])
    return ctmc.sample_categorical(probs.clamp_min(0.0))


def measure(fn) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak


def step_cost(batch: int, length: int, vocab: int = 50_257) -> dict:
    """Per-step cost of the lean absorbing Euler step vs the dense step, with a given random score."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    gen = torch.Generator().manual_seed(0)
    # A realistic score: s_y = p(x_0 = y | x_t) / expm1(sigma-bar) (RADD), so that about (t - s) / t of the
    # masked positions jump in a step, as with a trained model.
    score = torch.rand(batch, length, vocab + 1, generator=gen)
    score /= score.sum(-1, keepdim=True) * float(torch.expm1(process.total(torch.tensor(0.5))))
    x = torch.where(torch.rand(batch, length, generator=gen) < 0.5, vocab, torch.randint(0, vocab, (batch, length)))
    t, s = torch.full((batch,), 0.5, dtype=torch.float64), torch.full((batch,), 0.49, dtype=torch.float64)
    sampler = samplers.EulerSampler(process, steps=100)
    output = samplers.ModelOutput(score, None, process.total(t))
    block = score.numel() * score.element_size()
    lean_time, _ = measure(lambda: sampler.step(output, x, t, s, gen))
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lean_time = min(lean_time, measure(lambda: sampler.step(output, x, t, s, gen))[0])
    lean_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    dense_time = measure(lambda: dense_euler_step(process, score, x, 0.5, 0.01))[0]
    dense_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before - lean_rss
    row = {
        "batch": batch, "length": length, "vocab": vocab, "score_tensor_MiB": block / 2**20,
        "lean_seconds": lean_time, "dense_seconds": dense_time,
        "lean_extra_peak_rss_MiB": lean_rss / 1024, "dense_extra_peak_rss_MiB": max(dense_rss, 0) / 1024,
    }
    row["dense_extra_BxLxV_float32_tensors"] = row["dense_extra_peak_rss_MiB"] / row["score_tensor_MiB"]
    print(f"\nPer-step cost at V={vocab}, B={batch}, L={length} (score given; {row['score_tensor_MiB']:.0f} MiB):")
    print(f"  lean absorbing Euler step: {lean_time:.3f} s, extra peak RSS {row['lean_extra_peak_rss_MiB']:.0f} MiB")
    print(f"  dense step (full rates):   {dense_time:.3f} s, extra peak RSS {row['dense_extra_peak_rss_MiB']:.0f} MiB"
          f" (= {row['dense_extra_BxLxV_float32_tensors']:.1f} float32 B x L x V tensors)")
    return row


def throughput(batch: int, length: int, steps: int, vocab: int = 50_257) -> dict:
    """Wall time and tokens/s of sampling with a small RADD denoiser, cache on and off (Euler sampler)."""
    try:
        import models

        network = models.RADDDenoiser.from_preset("tiny", vocab_size=vocab, max_length=length).eval()
        name = "models.RADDDenoiser tiny"
    except Exception as error:  # the models package is developed concurrently
        print(f"  models.RADDDenoiser unavailable ({error}); using a stand-in embedding + linear network")
        network = torch.nn.Sequential(torch.nn.Embedding(vocab + 1, 64), torch.nn.Linear(64, vocab))
        network = torch.nn.Sequential(network, torch.nn.LogSoftmax(-1))
        name = "stand-in embedding + linear"
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    out = {"network": name, "batch": batch, "length": length, "steps": steps}
    for cache in (False, True):
        sampler = samplers.EulerSampler(process, steps=steps, cache=cache)
        start = time.perf_counter()
        result = sampler.generate(samplers.Denoiser(network, log=True), batch, length,
                                  generator=torch.Generator().manual_seed(0))
        elapsed = time.perf_counter() - start
        out[f"cache_{cache}"] = {"seconds": elapsed, "nfe": result.nfe, "tokens_per_s": batch * length / elapsed,
                                 "unigram_entropy": samplers.unigram_entropy(result.tokens)}
        entropy = out[f"cache_{cache}"]["unigram_entropy"]
        print(f"  {name}, {batch} x {length}, {steps} steps, cache={cache}: {elapsed:.1f} s, NFE {result.nfe}, "
              f"{batch * length / elapsed:.0f} tokens/s, unigram entropy {entropy:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes (slow on CPU)")
    args = parser.parse_args()
    if args.full:
        tv_args, step_args, nn_args = (20_000, [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]), (4, 1024), (16, 1024, 1024)
    else:
        tv_args, step_args, nn_args = (10_000, [2, 4, 8, 16, 32, 64, 128]), (4, 1024), (2, 128, 128)
    results = {"tv_vs_nfe": tv_table(*tv_args)}
    plot(results["tv_vs_nfe"], ROOT / "docs" / "samplers_tv_vs_nfe.png")
    results["step_cost"] = step_cost(*step_args)
    print("\nSampling throughput (2 CPU cores):")
    results["throughput"] = throughput(*nn_args)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "samplers.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out / 'samplers.json'} and docs/samplers_tv_vs_nfe.png")


if __name__ == "__main__":
    main()
