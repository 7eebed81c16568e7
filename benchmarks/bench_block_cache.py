"""The key/value cache of block diffusion sampling against recomputing the prefix: seconds for long texts.

    python -m benchmarks.bench_block_cache                       # 1,024 tokens, batch 4, V = 50,257 and 256
    python -m benchmarks.bench_block_cache --length 256 --vocab 50257 --samplers first-hitting --threads 1

A `models.BlockDenoiser` (preset "tiny": hidden 64, 2 layers, 2 heads; block-causal local mixing 3 as in
configs/bd3lm.yaml; block size 16;
max_length = --length, so the context never slides and the no-cache baseline recomputes up to --length - 16
positions per call) with random weights writes --batch rows of --length tokens with `samplers.BlockSampler`,
once with the cache (each finished block encoded once; every call runs the 16 positions of the block) and once
recomputing the context at every call (the network on [context, block]), with the same generator: the samples
must be identical (checked; the script fails otherwise). Inner samplers: first-hitting (exact, one call per
token) and Euler with 16 steps a block. Wall seconds and this process's CPU seconds are both reported (on a
shared machine the CPU time is the steadier measure). Then one cached call is broken down (`--profile`, CPU
milliseconds): the trunk over the block, the output head at the revealed rows, the log-softmax, the sampler's
draw, a whole call of the inner sampler, and the recomputing network call at the same context, each alone.

Prints a table and writes JSON (`--out`, default benchmarks/results/bench_block_cache.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import ctmc
import models
import samplers

BLOCK = 16


def network_for(vocab: int, length: int) -> models.BlockDenoiser:
    torch.manual_seed(0)
    return models.BlockDenoiser.from_preset("tiny", vocab, max_length=length, local_mixing=3, block_size=BLOCK,
                                            mix_across_blocks=True).eval()


def inner_sampler(name: str, process: ctmc.ForwardProcess) -> samplers.Sampler:
    if name == "first-hitting":
        return samplers.FirstHittingSampler(process)
    return samplers.EulerSampler(process, 16)


def run_pair(network: models.BlockDenoiser, inner: samplers.Sampler, batch: int, length: int) -> dict:
    """Seconds of one generation with and without the cache, the calls, and whether the samples agree."""
    row = {}
    tokens = {}
    for cache in (True, False):
        sampler = samplers.BlockSampler(inner, BLOCK, max_length=length, cache=cache)
        start, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            result = sampler.generate(network, batch, length, generator=torch.Generator().manual_seed(0))
        key = "cache" if cache else "recomputed"
        row[f"{key}_s"] = time.perf_counter() - start
        row[f"{key}_cpu_s"] = time.process_time() - cpu
        row[f"{key}_calls"] = result.calls
        row["nfe"] = result.nfe
        tokens[cache] = result.tokens
    row["speedup"] = row["recomputed_s"] / row["cache_s"]
    row["cpu_speedup"] = row["recomputed_cpu_s"] / row["cache_cpu_s"]
    row["same_samples"] = bool(torch.equal(tokens[True], tokens[False]))
    if not row["same_samples"]:
        raise SystemExit("error: the cached and the recomputed samples differ")
    return row


def timed(function, repeats: int) -> float:
    """CPU milliseconds (this process) per call of function() (one warm-up call first)."""
    function()
    start = time.process_time()
    for _ in range(repeats):
        function()
    return (time.process_time() - start) / repeats * 1e3


@torch.no_grad()
def profile_call(network: models.BlockDenoiser, process: ctmc.ForwardProcess, batch: int, context: int,
                 repeats: int) -> dict:
    """Milliseconds of the pieces of one cached first-hitting call after `context` clean positions."""
    generator = torch.Generator().manual_seed(1)
    vocab = network.vocab_size
    cache = network.encode_context(torch.randint(0, vocab, (batch, context), generator=generator))
    x = torch.full((batch, BLOCK), vocab)
    where = torch.zeros(batch, BLOCK, dtype=torch.bool)
    where[:, BLOCK // 2] = True
    positions = torch.arange(context, context + BLOCK)
    trunk = network.trunk
    hidden = trunk.hidden_states(x, positions=positions, caches=cache.layers(store=False), segment=BLOCK)
    logits = trunk.head(hidden, x, None, where).logits
    log_probs = torch.log_softmax(logits, -1)
    decoding = samplers.Decoding()
    inner = samplers.FirstHittingSampler(process)

    def block_model(tokens: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        return network.denoise_block(tokens, cache, where)

    model = samplers.Denoiser(block_model, log=True, positions=True)
    return {
        "denoise_block": timed(lambda: network.denoise_block(x, cache, where), repeats),
        "trunk": timed(lambda: trunk.hidden_states(x, positions=positions, caches=cache.layers(store=False),
                                                   segment=BLOCK), repeats),
        "head": timed(lambda: trunk.head(hidden, x, None, where), repeats),
        "log_softmax": timed(lambda: torch.log_softmax(logits, -1), repeats),
        "draw": timed(lambda: decoding.draw(log_probs.exp(), generator), repeats),
        "sampler_call": timed(lambda: inner.generate(model, batch, BLOCK, generator=generator), 2) / BLOCK,
        "recomputed_forward": timed(lambda: network(torch.cat([torch.randint(0, vocab, (batch, context)), x], 1),
                                                    where=torch.cat([torch.zeros(batch, context, dtype=torch.bool),
                                                                     where], 1)), max(repeats // 10, 2)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_block_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024, help="tokens per row (a multiple of 16)")
    parser.add_argument("--batch", type=int, default=4, help="rows")
    parser.add_argument("--vocab", type=int, nargs="+", default=[50_257, 256], help="vocabulary sizes")
    parser.add_argument("--samplers", nargs="+", default=["first-hitting", "euler"], choices=["first-hitting", "euler"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--profile", type=int, default=50, help="repeats of each piece of one cached call (0: none)")
    parser.add_argument("--out", default="benchmarks/results/bench_block_cache.json", help="JSON written at the end")
    arguments = parser.parse_args(argv)
    if arguments.length < BLOCK or arguments.length % BLOCK or arguments.batch < 1 or arguments.threads < 1:
        raise SystemExit(f"error: --length must be a positive multiple of {BLOCK}, --batch and --threads >= 1")
    torch.set_num_threads(arguments.threads)
    report = {"settings": {**vars(arguments), "torch": torch.__version__, "python": platform.python_version()},
              "rows": [], "profile": {}}
    print(f"{'V':>6} {'inner sampler':<14} {'NFE':>6} {'cache (s)':>10} {'recomputed (s)':>15} {'speed-up':>9} "
          f"{'CPU: cache':>11} {'recomputed':>11} {'speed-up':>9} same")
    for vocab in arguments.vocab:
        network = network_for(vocab, arguments.length)
        process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
        for name in arguments.samplers:
            row = {"vocab": vocab, "sampler": name, **run_pair(network, inner_sampler(name, process), arguments.batch,
                                                             arguments.length)}
            report["rows"].append(row)
            print(f"{vocab:>6} {name:<14} {row['nfe']:>6.0f} {row['cache_s']:>10.2f} {row['recomputed_s']:>15.2f} "
                  f"{row['speedup']:>8.2f}x {row['cache_cpu_s']:>11.2f} {row['recomputed_cpu_s']:>11.2f} "
                  f"{row['cpu_speedup']:>8.2f}x {row['same_samples']}", flush=True)
        if arguments.profile:
            pieces = profile_call(network, process, arguments.batch, arguments.length // 2, arguments.profile)
            report["profile"][str(vocab)] = pieces
            print(f"  V = {vocab}, one cached call after {arguments.length // 2} positions (CPU ms): "
                  + ", ".join(f"{key} {value:.2f}" for key, value in pieces.items()), flush=True)
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {arguments.out}")
    return report


if __name__ == "__main__":
    main()
