"""Time and peak memory of each loss (forward + backward) against a deliberately naive dense implementation.

Run:  python -m benchmarks.bench_losses            # reduced size: B=2, L=128, V=50,257 (< 1 minute)
      python -m benchmarks.bench_losses --full     # B=8, L=1,024, V=50,257 (~16 GB of RAM, ~4 minutes)

Memory claim (measured by this script; the ratio to one B x L x V float32 tensor does not depend on B, L):
during forward + backward every loss holds, beyond the network output, at most about one B x L x V float
tensor at a time: its gradient (unavoidable). The vocabulary-wide reductions (logsumexp, the score-entropy
sum, D3PM's uniform-chain mixture sum) are custom autograd Functions (ctmc/row_reductions.py) that keep one
temporary in the forward pass and write the whole gradient into one tensor in the backward pass; D3PM uses
closed-form posteriors for the Absorbing and Uniform chains. No one-hot of x0 and no n x n matrix.
Baselines: naive dense implementations (one-hots, dense ratio/weight tensors) for score entropy and the
cross-entropy, and for D3PM the generic path through ctmc.DiscreteTimeChain.posterior in float64
(`D3PMLoss.generic_kl_terms`, the implementation before the closed forms); the latter needs > 20 GB at
--full size and is skipped there.

How memory is measured: torch's CPU allocator is invisible to tracemalloc, so every case runs in a fresh
subprocess that (1) builds its inputs, (2) resets the kernel's peak-RSS counter (writing 5 to
/proc/self/clear_refs), (3) runs forward + backward, and (4) reports VmHWM - VmRSS(before): the largest extra
resident memory during the loss, in MiB and in units of one B x L x V float32 tensor. glibc returns large
blocks to the kernel on free, so this counts every big temporary. Time is the mean of 2 runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ctmc
import losses
from ctmc.hybrid import Hybrid

CASES = ["score_entropy_absorbing", "score_entropy_uniform", "score_entropy_hybrid", "lambda_dce", "tdce", "mdlm_nelbo",
         "d3pm_absorbing", "d3pm_uniform"]
# The baseline each case is compared with: naive dense formulas, or D3PM's generic posterior path.
BASELINE = {"score_entropy_absorbing": "naive", "score_entropy_uniform": "naive", "lambda_dce": "naive",
            "d3pm_absorbing": "generic", "d3pm_uniform": "generic"}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def naive_score_entropy(process, log_score, x0, x_t, t):
    """Baseline: dense (B, L, n) one-hot, ratios and weights, then s - r log s + K(r) entry by entry."""
    n = process.num_states
    total, sigma = process.total(t)[:, None, None], process.sigma(t)[:, None]
    one_hot = F.one_hot(x0, n).to(log_score.dtype)
    if process.rate_matrix.mask_index is not None:  # the absorbing chain (the only chain benchmarked with a mask)
        mask = F.one_hot(torch.full_like(x0, n - 1), n).to(log_score.dtype)
        rows = torch.exp(-total) * one_hot + (-torch.expm1(-total)) * mask
        weight = (x_t == n - 1)[..., None].to(log_score.dtype) * (1 - mask)
    else:
        rows = torch.exp(-total) * one_hot + (-torch.expm1(-total)) / n
        weight = (1 - F.one_hot(x_t, n).to(log_score.dtype)) / n
    ratio = rows / rows.gather(-1, x_t[..., None])
    score = log_score.exp()
    terms = weight * (score - ratio * log_score + torch.xlogy(ratio, ratio) - ratio)
    return sigma * terms.sum(-1)


def naive_masked_ce(process, log_probs, x0, x_t, t):
    """Baseline: cross-entropy through a float one-hot of x0 (B, L, V), weighted by 1/lambda (lambda-DCE)."""
    vocab = log_probs.shape[-1]
    one_hot = F.one_hot(x0, vocab).to(log_probs.dtype)
    nll = -(one_hot * log_probs).sum(-1) * (x_t == vocab)
    lam = -torch.expm1(-process.total(t))
    lam_max = -torch.expm1(-process.total(torch.ones(())))
    return (lam_max / lam)[:, None] * nll.sum(-1, keepdim=True)


def run_case(name: str, impl: str, batch: int, length: int, vocab: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, vocab, (batch, length), generator=g)
    if name.startswith("d3pm"):
        if name == "d3pm_absorbing":
            chain = ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(vocab), 1000)
        else:
            chain = ctmc.DiscreteTimeChain(ctmc.Uniform(vocab), torch.linspace(1e-4, 0.05, 1000))
        loss = losses.D3PMLoss.from_chain(chain)
        steps = loss.sample_steps(batch, generator=g)
        x_t = chain.sample(x0, steps[:, None], generator=g)
        width, time_arg = chain.num_states, steps.double() / chain.num_steps
    else:
        rate = {"score_entropy_uniform": ctmc.Uniform(vocab), "score_entropy_hybrid": Hybrid(vocab, 0.5, 1.0)}.get(
            name, ctmc.Absorbing(vocab)
        )
        process = ctmc.ForwardProcess(rate, ctmc.LogLinear())
        loss = {
            "score_entropy_absorbing": losses.ScoreEntropy,
            "score_entropy_uniform": losses.ScoreEntropy,
            "score_entropy_hybrid": losses.ScoreEntropy,
            "lambda_dce": losses.LambdaDCE,
            "tdce": losses.TDCE,
            "mdlm_nelbo": losses.MDLMNELBO,
        }[name](process)
        time_arg = loss.sample_time(batch, generator=g)
        x_t = process.sample(x0, time_arg[:, None], generator=g)
        width = loss.output_width
    output = torch.empty(batch, length, width).normal_(generator=g)
    if width == vocab:  # log-probabilities, normalised in place
        output -= torch.logsumexp(output, -1, keepdim=True)
    output.requires_grad_(True)

    def call():
        if impl == "generic":
            value = loss.generic_kl_terms(output, x0, x_t, steps).sum(-1)
        elif impl == "naive":
            fn = naive_masked_ce if name == "lambda_dce" else naive_score_entropy
            value = fn(loss.process, output, x0, x_t, time_arg)
        else:
            value = loss(output, x0, x_t, time_arg)
        value.sum().backward()
        output.grad = None

    call()  # warm-up
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    peak = _rss_kib("VmHWM") - before
    unit = batch * length * vocab * 4 / 2**20
    return {"loss": name, "impl": impl, "batch": batch, "length": length, "vocab": vocab,
            "ms": 1e3 * statistics.mean(times), "peak_mib": peak / 1024, "peak_in_BLV_float32": peak / 1024 / unit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="B=8, L=1024 (the memory claim's size)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--json", default="benchmarks/results/losses.json")
    parser.add_argument("--run-case", nargs=2, metavar=("LOSS", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.full:
        args.batch, args.length = 8, 1024
    if args.run_case:
        print(json.dumps(run_case(*args.run_case, args.batch, args.length, args.vocab)))
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    for name in CASES:
        for impl in ["ours", BASELINE[name]] if name in BASELINE else ["ours"]:
            if impl == "generic" and args.full:
                rows.append({"loss": name, "impl": impl, "skipped": "float64 posteriors need > 20 GB at full size"})
                continue
            cmd = [sys.executable, "-m", "benchmarks.bench_losses", "--run-case", name, impl,
                   "--batch", str(args.batch), "--length", str(args.length), "--vocab", str(args.vocab)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode} (killed?)"])[-1]
                rows.append({"loss": name, "impl": impl, "skipped": reason[:80]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"B={args.batch} L={args.length} V={args.vocab}; one B x L x V float32 tensor = "
          f"{args.batch * args.length * args.vocab * 4 / 2**20:.0f} MiB; forward + backward")
    print(f"{'loss':<26}{'impl':<7}{'ms':>10}{'peak MiB':>11}{'peak / BLV':>12}")
    for row in rows:
        if "skipped" in row:
            print(f"{row['loss']:<26}{row['impl']:<7}  skipped: {row['skipped']}")
        else:
            print(f"{row['loss']:<26}{row['impl']:<7}{row['ms']:>10.1f}{row['peak_mib']:>11.0f}"
                  f"{row['peak_in_BLV_float32']:>12.2f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"batch": args.batch, "length": args.length, "vocab": args.vocab, "rows": rows}
    path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
