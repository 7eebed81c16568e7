"""Time and peak memory of each loss (forward + backward) against a deliberately naive dense implementation.

Run:  PYTHONPATH=. python benchmarks/losses.py            # reduced size: B=2, L=128, V=50,257 (< 1 minute)
      PYTHONPATH=. python benchmarks/losses.py --full     # B=8, L=1,024, V=50,257 (needs ~20 GB of RAM)

Memory claim (measured by this script; the ratio to one B x L x V float32 tensor does not depend on B, L):
during forward + backward the continuous-time losses hold, beyond the network output, its gradient (one
B x L x V tensor, unavoidable) plus at most one (t-DCE, lambda-DCE, MDLM) or three (score entropy: the
logsumexp / expm1 temporaries) B x L x V float tensors: no one-hot of x0 and no n x n matrix. The naive
baselines build one-hots and dense ratio/weight tensors and need 3 (cross-entropy) to 9 (score entropy).
D3PMLoss is the exception: it calls ctmc.DiscreteTimeChain.posterior twice in float64 (generic over chains),
about six float64 B x L x n tensors; it is skipped at --full size and its numbers are reported honestly.

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

# This file is called losses.py: drop its own folder from the path so that `import losses` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ctmc  # noqa: E402
import losses  # noqa: E402

CASES = ["score_entropy_absorbing", "score_entropy_uniform", "lambda_dce", "tdce", "mdlm_nelbo", "d3pm_absorbing"]
NAIVE = {"score_entropy_absorbing", "score_entropy_uniform", "lambda_dce"}


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
    if isinstance(process.rate_matrix, ctmc.Absorbing):
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
    if name == "d3pm_absorbing":
        chain = ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(vocab), 1000)
        loss = losses.D3PMLoss(chain)
        steps = loss.sample_steps(batch, generator=g)
        x_t = chain.sample(x0, steps[:, None], generator=g)
        width, time_arg = vocab + 1, steps
    else:
        rate = ctmc.Uniform(vocab) if name == "score_entropy_uniform" else ctmc.Absorbing(vocab)
        process = ctmc.ForwardProcess(rate, ctmc.LogLinear())
        loss = {
            "score_entropy_absorbing": losses.ScoreEntropy,
            "score_entropy_uniform": losses.ScoreEntropy,
            "lambda_dce": losses.LambdaDCE,
            "tdce": losses.TDCE,
            "mdlm_nelbo": losses.MDLMNELBO,
        }[name](process)
        time_arg = loss.sample_time(batch, generator=g)
        x_t = process.sample(x0, time_arg[:, None], generator=g)
        width = loss._output_width()
    output = torch.empty(batch, length, width).normal_(generator=g)
    if width == vocab:  # log-probabilities, normalised in place
        output -= torch.logsumexp(output, -1, keepdim=True)
    output.requires_grad_(True)

    def call():
        if impl == "naive":
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
        for impl in ["ours", "naive"] if name in NAIVE else ["ours"]:
            if name == "d3pm_absorbing" and args.full:
                rows.append({"loss": name, "impl": impl, "skipped": "float64 posteriors need > 20 GB at full size"})
                continue
            cmd = [sys.executable, __file__, "--run-case", name, impl, "--batch", str(args.batch),
                   "--length", str(args.length), "--vocab", str(args.vocab)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if done.returncode != 0:
                rows.append({"loss": name, "impl": impl, "skipped": done.stderr.strip().splitlines()[-1][:80]})
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
