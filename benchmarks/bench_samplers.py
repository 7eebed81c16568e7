"""Benchmark of the samplers: accuracy against NFE with exact scores (sampled, and the exact law of each scheme
by enumeration), remasking against parallel unmasking, per-row caching against whole-batch caching, the lean
absorbing step against a dense one at GPT-2 vocabulary, and full outputs against packed rows (`where`).

    python -m benchmarks.bench_samplers                # ~25 minutes on 2 loaded CPU cores, 6 GB of RAM at its peak
    python -m benchmarks.bench_samplers --only packed  # the full-vs-packed section alone (~10 minutes)

Prints tables, writes benchmarks/results/samplers.json, benchmarks/results/samplers_packed.json and
docs/samplers_tv_vs_nfe.png.
Baselines in the same run: Euler and tau-leaping at equal NFE, the TV of an exact sampler's histogram of the
same size (noise floor), plain parallel unmasking at equal NFE, no cache and the whole-batch cache, a dense
Euler step that builds the full reverse-rate tensor and draws over V + 1 categories everywhere, and every
sampler with full network outputs (interleaved with the packed runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
import tracemalloc
from pathlib import Path

import torch
from torch import Tensor

import ctmc
import samplers
from ctmc.enumeration import ToyChain, total_variation  # the enumeration reference of the tests
from ctmc.scheme_law import denoised_law, law_at_eps  # exact law of a scheme by enumeration

ROOT = Path(__file__).resolve().parents[1]

SEQUENCE = ("EulerSampler", "TauLeapingSampler", "TweedieSampler", "TrapezoidalSampler", "RK2Sampler")
TWO_STAGE = (samplers.TrapezoidalSampler, samplers.RK2Sampler)


def toy_chains() -> dict[str, ctmc.ForwardProcess]:
    """The toy chains of tests/samplers/sampler_contract.py (V = 3, L = 3)."""
    return {
        "absorbing": ctmc.ForwardProcess(ctmc.Absorbing(3), ctmc.LogLinear(1e-4)),
        "uniform": ctmc.ForwardProcess(ctmc.Uniform(3), ctmc.Geometric(1e-3, 12.0)),
    }


def steps_for(cls: type, nfe: int) -> int:
    """Grid steps giving `nfe` network calls with the final denoising step (two calls a step for theta-methods)."""
    return (nfe - 1) // 2 if cls in TWO_STAGE else nfe - 1


def slope(points: list[tuple[float, float]], floor: float = 0.0) -> float | None:
    """Least-squares slope of log TV against log NFE over the points with TV > floor (None if < 2 points)."""
    kept = [(math.log(n), math.log(tv)) for n, tv in points if tv > floor]
    if len(kept) < 2:
        return None
    mean_x = sum(x for x, _ in kept) / len(kept)
    mean_y = sum(y for _, y in kept) / len(kept)
    return sum((x - mean_x) * (y - mean_y) for x, y in kept) / sum((x - mean_x) ** 2 for x, _ in kept)


def tv_table(num_samples: int, nfe_list: list[int]) -> dict:
    """TV(histogram, p0) against NFE for every sampler with the exact score (and ReMDM / first-hitting on the
    absorbing chain), the final denoising step included; baseline: an exact sampler's histogram (noise floor)."""
    results = {}
    for name, process in toy_chains().items():
        toy = ToyChain(process, 3, 3)
        model = samplers.ConcreteScore(toy.score)
        exact = ctmc.sample_categorical(toy.p0.expand(num_samples, -1), torch.Generator().manual_seed(1))
        floor = total_variation(torch.bincount(exact, minlength=27).double() / num_samples, toy.p0)
        rows = {"noise_floor": floor}
        kinds = [getattr(samplers, key) for key in SEQUENCE]
        if name == "absorbing":
            kinds.append(samplers.ReMDMSampler)
        for cls in kinds:
            rows[cls.__name__] = []
            for nfe in nfe_list:
                result = cls(process, steps=steps_for(cls, nfe), eps=1e-3).generate(
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
        print(f"\nTV(histogram, p0) vs NFE, {name} chain, exact score (V=3, L=3, N={num_samples}); "
              f"exact-sampler floor {floor:.4f}")
        for key, values in rows.items():
            if key != "noise_floor":
                fit = slope(values, 3 * floor) if key != "FirstHittingSampler" else None
                fit_text = f"  slope {fit:+.2f} (TV > 3 x floor)" if fit is not None else ""
                print(f"  {key:20s} " + "  ".join(f"{nfe:>5.0f}:{tv:.4f}" for nfe, tv in values) + fit_text)
    return results


def exact_law_table(nfe_list: list[int]) -> dict:
    """TV(law of the sample, p0) of each scheme computed exactly by enumeration (ctmc/scheme_law.py;
    no sampling noise; the final denoising step included, as in `tv_table`): the error and its order.
    'trapezoidal (signed)' keeps the negative stage-2 rates (not samplable): it shows what the clipping costs."""
    schemes = {"euler": "euler", "tau-leaping": "tau", "trapezoidal": "trapezoidal", "rk2": "rk2"}
    results = {}
    for name, process in toy_chains().items():
        toy = ToyChain(process, 3, 3)
        rows = {}
        for label, scheme in [*schemes.items(), ("trapezoidal (signed)", "trapezoidal")]:
            two_stage = scheme in ("trapezoidal", "rk2")
            rows[label] = []
            for nfe in nfe_list:
                steps = nfe // 2 if two_stage else nfe
                law = law_at_eps(toy, scheme, steps, 1e-3, clip=label != "trapezoidal (signed)")
                rows[label].append((nfe + 1, total_variation(denoised_law(toy, law, 1e-3), toy.p0)))
        results[name] = rows
        print(f"\nExact law by enumeration: TV(law of the sample, p0) vs NFE, {name} chain; local slopes")
        for label, values in rows.items():
            local = [math.log(b[1] / a[1]) / math.log(b[0] / a[0]) for a, b in itertools.pairwise(values)]
            print(f"  {label:21s} " + "  ".join(f"{nfe:>4d}:{tv:.5f}" for nfe, tv in values)
                  + "   slopes " + " ".join(f"{x:+.2f}" for x in local))
    return results


def remasking_table(num_samples: int, nfe_list: list[int], vocab: int = 2, length: int = 8) -> dict:
    """ReMDM against plain parallel unmasking at equal NFE (below and above L) on a larger toy chain with the
    exact denoiser; no cache, so NFE = steps + 1 (first-hitting: NFE = steps)."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(1e-4))
    toy = ToyChain(process, vocab, length)
    model = samplers.Denoiser(toy.denoiser)
    exact = ctmc.sample_categorical(toy.p0.expand(num_samples, -1), torch.Generator().manual_seed(1))
    floor = total_variation(torch.bincount(exact, minlength=vocab**length).double() / num_samples, toy.p0)
    kinds = {
        "plain ancestral (strength 0)": {"remasking": "rate", "strength": 0.0},
        "ReMDM rate, strength 1": {"remasking": "rate", "strength": 1.0},
        "ReMDM rate, strength 4": {"remasking": "rate", "strength": 4.0},
        "ReMDM cap 0.05": {"remasking": "cap", "strength": 0.05},
        "ReMDM rescale 0.5": {"remasking": "rescale", "strength": 0.5},
    }
    rows: dict = {"noise_floor": floor}
    for label, options in kinds.items():
        rows[label] = []
        for nfe in nfe_list:
            sampler = samplers.ReMDMSampler(process, steps=nfe - 1, eps=1e-3, cache=False, **options)
            result = sampler.generate(model, num_samples, length, generator=torch.Generator().manual_seed(0))
            rows[label].append((result.nfe, total_variation(toy.histogram(result.tokens), toy.p0)))
    rows["first-hitting (parallel)"] = []
    for nfe in nfe_list:
        result = samplers.FirstHittingSampler(process, steps=nfe if nfe < length else None).generate(
            model, num_samples, length, generator=torch.Generator().manual_seed(0)
        )
        rows["first-hitting (parallel)"].append((result.nfe, total_variation(toy.histogram(result.tokens), toy.p0)))
    print(f"\nRemasking vs parallel unmasking: TV(histogram, p0) vs NFE, absorbing toy V={vocab}, L={length}, "
          f"exact denoiser, N={num_samples}; exact-sampler floor {floor:.4f} (first-hitting: exact at NFE >= L)")
    for key, values in rows.items():
        if key != "noise_floor":
            print(f"  {key:30s} " + "  ".join(f"{nfe:>4.0f}:{tv:.4f}" for nfe, tv in values))
    return rows


COLORS = {
    "EulerSampler": "C0", "euler": "C0", "TauLeapingSampler": "C1", "tau-leaping": "C1", "TweedieSampler": "C2",
    "TrapezoidalSampler": "C3", "trapezoidal": "C3", "trapezoidal (signed)": "C3", "RK2Sampler": "C4", "rk2": "C4",
    "ReMDMSampler": "C5", "FirstHittingSampler": "C6",
}


def plot(results: dict, laws: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (name, rows) in zip(axes[0], results.items(), strict=True):
        for key, values in rows.items():
            if key == "noise_floor":
                ax.axhline(values, color="gray", ls="--", label="exact sampler (noise floor)")
            else:
                nfe, tv = zip(*values, strict=True)
                ax.plot(nfe, tv, marker="o", ms=3, color=COLORS[key], label=key)
        ax.set(xscale="log", yscale="log", xlabel="NFE (network calls)", ylabel="TV(sample histogram, p0)",
               title=f"{name} chain, exact score, sampled (N = 20,000)")
        ax.legend(fontsize=7)
    for ax, (name, rows) in zip(axes[1], laws.items(), strict=True):
        for key, values in rows.items():
            shown = [(n, tv) for n, tv in values if tv < 1.0]  # the signed scheme is unstable at 2 steps
            nfe, tv = zip(*shown, strict=True)
            ax.plot(nfe, tv, marker="o", ms=3, color=COLORS[key], ls=":" if "signed" in key else "-", label=key)
        nfe = [n for n, _ in rows["trapezoidal"]]
        anchor_nfe, anchor_tv = rows["trapezoidal"][2]
        ax.plot(nfe, [anchor_tv * (anchor_nfe / n) ** 2 for n in nfe], color="gray", lw=0.8, label="slope -2")
        ax.plot(nfe, [anchor_tv * anchor_nfe / n for n in nfe], color="gray", lw=0.8, ls="--", label="slope -1")
        ax.set(xscale="log", yscale="log", xlabel="NFE (network calls)", ylabel="TV(exact law of the sample, p0)",
               title=f"{name} chain, exact law by enumeration")
        ax.legend(fontsize=7)
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


def caching(batch: int, length: int, steps_list: list[int], vocab: int) -> dict:
    """Euler sampling with a tiny RADD denoiser (random weights), per-row cache vs whole-batch cache vs none:
    wall time, NFE (row-evaluations / B), forward passes, and whether the samples are identical."""
    import models

    torch.manual_seed(0)
    network = models.RADDDenoiser.from_preset("tiny", vocab_size=vocab, max_length=length).eval()
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    out: dict = {"network": f"models.RADDDenoiser tiny, V={vocab}", "batch": batch, "length": length, "runs": []}
    print(f"\nCaching, models.RADDDenoiser 'tiny' (V={vocab}), Euler, B={batch}, L={length}, 1 thread:")
    for steps in steps_list:
        reference = None
        for cache in ("none", "batch", "row"):
            sampler = samplers.EulerSampler(process, steps=steps, cache=cache)
            start = time.perf_counter()
            result = sampler.generate(samplers.Denoiser(network, log=True), batch, length,
                                      generator=torch.Generator().manual_seed(0))
            elapsed = time.perf_counter() - start
            reference = result.tokens if reference is None else reference
            run = {"steps": steps, "cache": cache, "seconds": elapsed, "nfe": result.nfe, "calls": result.calls,
                   "same_samples_as_no_cache": bool(torch.equal(result.tokens, reference))}
            out["runs"].append(run)
            print(f"  steps {steps:5d}  cache={cache:5s}  {elapsed:7.1f} s  NFE {result.nfe:7.1f}  "
                  f"forward passes {result.calls:5d}  same samples as no cache: {run['same_samples_as_no_cache']}")
    return out


class PackedStandIn(torch.nn.Module):
    """A models.DiT / models.RADDDenoiser that computes its output projection only at `where` (the packed rows).

    If the network's forward already takes `where` (the networks' packed outputs), it is called as is;
    otherwise this benchmark-local stand-in runs the network's own trunk on every position and its head (and
    DiT's absorbing shift and zero at x) on the rows at `where` only, which is what the packed networks compute.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        import inspect

        import models

        self.network = network
        self.native = "where" in inspect.signature(network.forward).parameters
        self.is_dit = isinstance(network, models.DiT)

    def forward(self, x: Tensor, sigma: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        network = self.network
        if where is None:
            return network(x, sigma)
        if self.native:
            return network(x, sigma, where=where)
        from ctmc.noise_ratio import log_expm1
        from models.rotary import rotary_rotation

        trunk = network.trunk
        cond = network.noise_embedding(sigma) if self.is_dit else None
        h = trunk.embedding(x)
        rotation = rotary_rotation(torch.arange(x.shape[1], device=x.device), trunk.head_dim)
        for block in trunk.blocks:
            h = block(h, rotation, cond)
        h = trunk.final_norm(h, cond)[where]  # (N, H)
        weight = trunk.embedding.weight[: trunk.output_size] if trunk.output_weight is None else trunk.output_weight
        logits = torch.nn.functional.linear(h, weight, trunk.output_bias).float()
        if not self.is_dit:
            return torch.log_softmax(logits, dim=-1)
        if network.absorbing_parameterization:
            shift = log_expm1(sigma.float()) + math.log(network.vocab_size - 1)  # (B,)
            logits -= shift[:, None].expand(x.shape)[where][:, None]
        return logits.scatter_(-1, x[where][:, None], 0.0)


def tiny_networks(vocab: int, length: int) -> dict[str, torch.nn.Module]:
    """models.DiT and models.RADDDenoiser 'tiny' presets over V clean tokens (+ the mask), random output
    weights (std 0.02; the presets start at zero), DiT with the absorbing parameterisation so that the masks
    are revealed along the schedule as with a trained network."""
    import models

    torch.manual_seed(0)
    dit = models.DiT.from_preset("tiny", vocab_size=vocab + 1, max_length=length, absorbing_parameterization=True)
    radd = models.RADDDenoiser.from_preset("tiny", vocab_size=vocab, max_length=length)
    for network in (dit, radd):
        torch.nn.init.normal_(network.trunk.output_weight, std=0.02)
    return {"DiT": dit.eval(), "RADDDenoiser": radd.eval()}


def wrap(name: str, network: torch.nn.Module, packed: bool) -> samplers.ConcreteScore | samplers.Denoiser:
    """The sampler model: full outputs (plain callable) or packed rows (positions=True)."""
    stand_in = PackedStandIn(network)
    if name == "DiT":
        if packed:
            return samplers.ConcreteScore(stand_in, log=True, positions=True)
        return samplers.ConcreteScore(lambda x, total: network(x, total), log=True)
    if packed:
        return samplers.Denoiser(lambda x, where: stand_in(x, None, where), log=True, positions=True)
    return samplers.Denoiser(lambda x: network(x), log=True)


def packed_sampling(plan: dict[int, tuple[int, list[str]]], batch: int, repeats: int, vocab: int) -> dict:
    """Wall time per generated sequence, full outputs vs packed rows, for the samplers of plan[L] = (grid steps,
    sampler labels) with the tiny DiT (ConcreteScore) and RADD (Denoiser, per-row cache) at V = vocab; runs
    interleaved (full, packed, full, ...), one thread; medians over `repeats`. First-hitting with NFE = L
    (packed) is compared with the network alone called on one row per sequence and on every row, per call x L."""
    samplers_to_time = [
        ("euler", samplers.EulerSampler, {}), ("tau-leaping", samplers.TauLeapingSampler, {}),
        ("tweedie", samplers.TweedieSampler, {}), ("trapezoidal", samplers.TrapezoidalSampler, {}),
        ("rk2", samplers.RK2Sampler, {}), ("remdm", samplers.ReMDMSampler, {}),
        ("first-hitting K", samplers.FirstHittingSampler, {}),
    ]
    import os
    import statistics

    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    out: dict = {"vocab": vocab, "batch": batch, "repeats": repeats, "threads": 1, "cases": [], "first_hitting": []}
    out["load_before"] = os.getloadavg()
    print(f"\nFull outputs vs packed rows (tiny presets, V={vocab}, B={batch}, 1 thread, median of {repeats}; "
          f"load {out['load_before'][0]:.1f}):")
    for length, (steps, labels) in plan.items():
        networks = tiny_networks(vocab, length)
        out["native_where"] = {k: PackedStandIn(v).native for k, v in networks.items()}
        chosen = [entry for entry in samplers_to_time if entry[0] in labels]
        for (label, cls, options), (name, network) in itertools.product(chosen, networks.items()):
            times: dict[bool, list[float]] = {False: [], True: []}
            tokens: dict[bool, Tensor] = {}
            nfe = {}
            for _, packed in itertools.product(range(repeats), (False, True)):
                sampler = cls(process, steps=steps, **options)
                start = time.perf_counter()
                result = sampler.generate(wrap(name, network, packed), batch, length,
                                          generator=torch.Generator().manual_seed(0))
                times[packed].append((time.perf_counter() - start) / batch)
                tokens[packed], nfe[packed] = result.tokens, result.nfe
            row = {"sampler": label, "network": name, "length": length, "steps": steps, "nfe": nfe[True],
                   "full_s_per_seq": statistics.median(times[False]),
                   "packed_s_per_seq": statistics.median(times[True]),
                   "same_samples": bool(torch.equal(tokens[False], tokens[True]))}
            out["cases"].append(row)
            print(f"  L={length:5d} {label:15s} {name:12s} steps {steps:4d} NFE {row['nfe']:6.1f}  full "
                  f"{row['full_s_per_seq']:7.3f} s/seq  packed {row['packed_s_per_seq']:7.3f} s/seq  "
                  f"x{row['full_s_per_seq'] / row['packed_s_per_seq']:.2f}  same samples {row['same_samples']}")
        out["first_hitting"] += first_hitting_cost(process, networks, batch, length, vocab, run_sampler=length <= 128)
    out["load_after"] = os.getloadavg()
    print(f"  load after: {out['load_after'][0]:.1f}")
    return out


def first_hitting_cost(
    process, networks, batch: int, length: int, vocab: int, run_sampler: bool, calls: int = 8
) -> list[dict]:
    """First-hitting with NFE = L (packed rows, one per sequence a call; run if run_sampler) against the network
    alone: one-row calls and full calls, each timed over `calls` calls, times L."""
    rows = []
    gen = torch.Generator().manual_seed(1)
    x = torch.where(torch.rand(batch, length, generator=gen) < 0.5, vocab, torch.randint(0, vocab, (batch, length)))
    one = torch.zeros(batch, length, dtype=torch.bool)
    one[:, 0] = True
    x[:, 0] = vocab
    sigma = torch.full((batch,), 0.7)
    for name, network in networks.items():
        stand_in = PackedStandIn(network)
        sampler_seconds, nfe = float("nan"), float("nan")
        if run_sampler:
            start = time.perf_counter()
            result = samplers.FirstHittingSampler(process).generate(
                wrap(name, network, True), batch, length, generator=torch.Generator().manual_seed(0)
            )
            sampler_seconds, nfe = time.perf_counter() - start, result.nfe
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(calls):
                stand_in(x, sigma, one)
            single = (time.perf_counter() - start) / calls
            start = time.perf_counter()
            for _ in range(calls):
                network(x, sigma)
            full = (time.perf_counter() - start) / calls
        row = {"network": name, "length": length, "nfe": nfe, "sampler_s_per_seq": sampler_seconds / batch,
               "single_row_call_s": single, "full_call_s": full,
               "L_single_row_calls_s_per_seq": single * length / batch, "L_full_calls_s_per_seq": full * length / batch}
        rows.append(row)
        print(f"  first-hitting NFE=L={length:5d} {name:12s}: sampler {row['sampler_s_per_seq']:7.3f} s/seq; network "
              f"alone, L one-row calls {row['L_single_row_calls_s_per_seq']:7.3f} s/seq, L full calls "
              f"{row['L_full_calls_s_per_seq']:7.3f} s/seq (calls timed over {calls}, times L)")
    return rows


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def extra_peak_rss(fn) -> float:
    """MiB of resident memory above the current level at the peak of fn() (Linux: VmHWM reset by clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - base) / 1024


def log_step_memory(batch: int = 4, length: int = 1024, vocab: int = 50_257) -> dict:
    """Extra peak RSS of one absorbing Euler step given log-scores (what the networks return), in units of one
    B x L x (V + 1) float32 tensor: exponentiating the whole output first (the step before packed rows) against
    the chunked step on the full output and on the packed rows at the masks."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    gen = torch.Generator().manual_seed(0)
    t, s = torch.full((batch,), 0.5, dtype=torch.float64), torch.full((batch,), 0.49, dtype=torch.float64)
    total = process.total(t)
    # log s_y = log p(y) - log expm1(sigma-bar) with p near uniform: about (t - s) / t of the masks jump.
    log_score = torch.randn(batch, length, vocab + 1, generator=gen) * 0.1 - math.log(vocab)
    log_score -= float(torch.log(torch.expm1(total[0])))
    x = torch.where(torch.rand(batch, length, generator=gen) < 0.5, vocab, torch.randint(0, vocab, (batch, length)))
    where = x == vocab
    packed = log_score[where]
    sampler = samplers.EulerSampler(process, steps=100)
    tensor_mib = log_score.numel() * 4 / 2**20
    cases = {
        "exp of the whole output, then the step": lambda: sampler.step(
            samplers.ModelOutput(log_score.exp(), None, total), x, t, s, gen),
        "log-values, full output (chunked exp)": lambda: sampler.step(
            samplers.ModelOutput(log_score, None, total, log=True), x, t, s, gen),
        "log-values, packed rows at the masks": lambda: sampler.step(
            samplers.ModelOutput(packed, None, total, where, log=True), x, t, s, gen),
    }
    out = {"batch": batch, "length": length, "vocab": vocab, "tensor_MiB": tensor_mib, "cases": {}}
    print(f"\nExtra peak RSS of one absorbing Euler step on log-scores, B={batch}, L={length}, V={vocab} "
          f"(one B x L x (V+1) float32 tensor = {tensor_mib:.0f} MiB):")
    for label, fn in cases.items():
        start = time.perf_counter()
        extra = extra_peak_rss(fn)
        elapsed = time.perf_counter() - start
        out["cases"][label] = {"extra_peak_MiB": extra, "tensors": extra / tensor_mib, "seconds": elapsed}
        print(f"  {label:40s} {extra:7.0f} MiB = {extra / tensor_mib:4.2f} tensors, {elapsed:.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["packed", "first-hitting"], default=None,
                        help="run only one section: 'packed' (full outputs vs packed rows, ~10 minutes) or "
                             "'first-hitting' (NFE = L against L one-row network calls at L = 128 and 1,024, "
                             "~2 minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "first-hitting":
        process = ctmc.ForwardProcess(ctmc.Absorbing(50_257), ctmc.LogLinear())
        rows = [row for length in (128, 1024) for row in first_hitting_cost(
            process, tiny_networks(50_257, length), batch=1, length=length, vocab=50_257, run_sampler=True)]
        (out / "samplers_first_hitting.json").write_text(json.dumps(rows, indent=2))
        print(f"\nwrote {out / 'samplers_first_hitting.json'}")
        return
    memory = log_step_memory()
    everything = ["euler", "tau-leaping", "tweedie", "trapezoidal", "rk2", "remdm", "first-hitting K"]
    plan = {128: (8, everything), 1024: (4, ["euler", "remdm", "first-hitting K"])}
    packed = packed_sampling(plan, batch=1, repeats=3, vocab=50_257)
    packed["log_step_memory"] = memory
    (out / "samplers_packed.json").write_text(json.dumps(packed, indent=2))
    print(f"\nwrote {out / 'samplers_packed.json'}")
    if args.only == "packed":
        return
    results = {"tv_vs_nfe": tv_table(20_000, [3, 5, 9, 17, 33, 65, 129])}
    results["exact_law"] = exact_law_table([4, 8, 16, 32, 64, 128, 256])
    plot(results["tv_vs_nfe"], results["exact_law"], ROOT / "docs" / "samplers_tv_vs_nfe.png")
    results["remasking"] = remasking_table(20_000, [2, 4, 6, 8, 16, 32])
    results["caching"] = caching(16, 128, [128, 512, 1024], vocab=1024)
    results["step_cost"] = step_cost(4, 1024)
    (out / "samplers.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out / 'samplers.json'} and docs/samplers_tv_vs_nfe.png")


if __name__ == "__main__":
    main()
