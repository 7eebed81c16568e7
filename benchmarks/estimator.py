"""Variance of the negative-ELBO estimators on a trained checkpoint, and agreement with an independent estimate.

Run:  python -m benchmarks.estimator --ckpt_path logs/.../last.ckpt [--blocks 64] [--replicates 16]
          [--reference_times 128] [--draws 16]

On the first `--blocks` validation blocks of the checkpoint's data (the blocks `lightning fit` validates on):
1. per-block variance of ONE draw, estimated from `--replicates` independently seeded draws per block, for
   today's estimator (t ~ loss.sample_time, x_t ~ the forward process; baseline) and for the masked-count
   estimator (losses.MaskedCountEstimator); the ratio of the mean per-block variances is the variance reduction;
2. the bound in bits/token with its SE (evaluation.bounds.ratio_estimate over blocks) of: the masked-count
   estimator with `--draws` draws per block (what validation logs), and the independent reference, today's
   estimator with `--reference_times` stratified times per block and another seed;
3. whether they agree: |difference| against the SE of the difference of the two (paired over blocks);
4. the cross-entropy of the training blocks' unigram model on the same blocks (the reference to beat).
--replicates 0 / --reference_times 0 skip parts 1 / 2-3 (e.g. to measure the SE of many blocks quickly).
Prints a table and writes JSON to benchmarks/results/estimator.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import losses
from data import unigram_log_probs
from evaluation.bounds import ratio_estimate, sequence_negative_elbo
from evaluation.restore import TrainedModel, load_trained
from evaluation.training_data import training_data


def draws(trained: TrainedModel, x0: torch.Tensor, count: int, seed: int, estimator, batch: int = 8) -> torch.Tensor:
    """(B, count) nats per sequence and draw with `estimator` (None: today's time estimator)."""
    rows = []
    with torch.no_grad():
        for start in range(0, x0.shape[0], batch):
            rows.append(sequence_negative_elbo(
                trained.loss, trained.network, x0[start : start + batch], count, seed, estimator=estimator
            ).double())
    return torch.cat(rows)


def replicate_variance(trained: TrainedModel, x0: torch.Tensor, replicates: int, estimator) -> torch.Tensor:
    """(B,) variance over `replicates` independently seeded single draws of each block."""
    values = torch.stack([draws(trained, x0, 1, 1000 + r, estimator)[:, 0] for r in range(replicates)], dim=1)
    return values.var(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--reference_times", type=int, default=128)
    parser.add_argument("--output", default="benchmarks/results/estimator.json")
    arguments = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trained = load_trained(arguments.ckpt_path)
    data = training_data(trained)
    x0 = torch.stack([data.validation[i] for i in range(arguments.blocks)])
    tokens = torch.full((x0.shape[0],), float(x0.shape[1]), dtype=torch.float64)
    counts = trained.estimator or losses.estimator_for("masked_count", trained.process, "val_estimator")
    ln2 = math.log(2.0)
    result = {"checkpoint": arguments.ckpt_path, "blocks": x0.shape[0], "seq_len": x0.shape[1]}

    start = time.perf_counter()
    if arguments.replicates > 1:
        variance_time = replicate_variance(trained, x0, arguments.replicates, None)
        variance_count = replicate_variance(trained, x0, arguments.replicates, counts)
        result["mean_block_variance_time_nats2"] = float(variance_time.mean())
        result["mean_block_variance_count_nats2"] = float(variance_count.mean())
        result["variance_ratio"] = float(variance_time.mean() / variance_count.mean())
        result["median_block_variance_ratio"] = float((variance_time / variance_count).median())

    estimate = draws(trained, x0, arguments.draws, trained.seed, counts).mean(dim=1)
    series = [("count", estimate)]
    if arguments.reference_times > 0:
        reference = draws(trained, x0, arguments.reference_times, 7, None).mean(dim=1)
        series += [("reference_time", reference), ("time_k1", draws(trained, x0, 1, trained.seed, None).mean(dim=1))]
    unigram = unigram_log_probs(data.train, data.vocab_size)
    series.append(("unigram", -unigram[x0].sum(-1)))
    for name, values in series:
        ratio = ratio_estimate(values, tokens)
        result[f"{name}_bits"] = ratio.value / ln2
        result[f"{name}_bits_se"] = ratio.standard_error / ln2
    if arguments.reference_times > 0:
        difference = ratio_estimate(estimate - reference, tokens)
        result["difference_bits"] = difference.value / ln2
        result["difference_bits_se"] = difference.standard_error / ln2
        result["agree_within_2se"] = abs(difference.value) < 2 * difference.standard_error
    result["seconds"] = time.perf_counter() - start

    print(f"{'quantity':<46} value")
    for key, value in result.items():
        print(f"{key:<46} {value:.4f}" if isinstance(value, float) else f"{key:<46} {value}")
    Path(arguments.output).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
