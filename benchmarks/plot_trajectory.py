"""The figure of docs/samplers.md, "Driving the loop": one trajectory of `samplers.EulerSampler` on the absorbing
chain, read from `Sampler.generate(..., keep_trajectory=True)`, and the fraction of masked positions of a batch at
each state against the forward marginal 1 - e^{-sigma-bar(t)} = (1 - eps) t of the log-linear schedule.

The model is the exact denoiser of a product law (position i is token i mod V with probability 0.8, else uniform),
so that p(x0^i | x_t) is known at every mask without a trained network and the picture shows the sampler alone.

    python -m benchmarks.plot_trajectory      # writes docs/trajectory.png (a few seconds on a CPU)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

import ctmc
import samplers

VOCAB, LENGTH, STEPS, BATCH, SEED = 8, 48, 24, 256, 0


def product_law_denoiser(x: torch.Tensor) -> torch.Tensor:
    """p(x0^i = y | x_t) for the product law: 0.8 [y = i mod V] + 0.2 / V at every position. Returns (B, L, V)."""
    law = torch.full((x.shape[1], VOCAB), 0.2 / VOCAB, dtype=torch.float64)
    law[torch.arange(x.shape[1]), torch.arange(x.shape[1]) % VOCAB] += 0.8
    return law.expand(x.shape[0], -1, -1)


def main() -> None:
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    sampler = samplers.EulerSampler(process, steps=STEPS)
    result = sampler.generate(
        samplers.Denoiser(product_law_denoiser), BATCH, LENGTH,
        generator=torch.Generator().manual_seed(SEED), keep_trajectory=True,
    )
    states, times = result.states, result.times[:, 0]  # (K + 1, B, L), (K + 1,): 1, ..., eps, 0
    mask = process.rate_matrix.mask_index

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    picture = states[:, 0].double().masked_fill(states[:, 0] == mask, float("nan")).numpy()
    colours = matplotlib.colormaps["tab10"].resampled(VOCAB).with_extremes(bad="0.85")
    left.imshow(picture, cmap=colours, vmin=-0.5, vmax=VOCAB - 0.5, aspect="auto", interpolation="nearest")
    rows = range(0, len(times), 4)
    left.set_yticks(list(rows), [f"{float(times[k]):.2f}" for k in rows])
    left.set_xlabel("position")
    left.set_ylabel("t (1: start, 0: after denoising)")
    left.set_title(f"one sequence: token colour, mask grey ({STEPS} Euler steps + denoising)")

    masked = (states == mask).double().mean((1, 2)).numpy()
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    forward = -torch.expm1(-process.total(grid))
    right.plot(grid.numpy(), forward.numpy(), color="0.5", label="forward: 1 - exp(-total(t))")
    right.plot(times.numpy(), masked, "o", markersize=3, color="C3", label=f"sampled ({BATCH} sequences)")
    right.invert_xaxis()
    right.set_xlabel("t")
    right.set_ylabel("fraction of positions masked")
    right.set_title("masked fraction per state")
    right.legend(frameon=False)
    figure.suptitle(f"EulerSampler on Absorbing({VOCAB}) with LogLinear(eps=1e-3), L = {LENGTH}, seed {SEED}")
    figure.tight_layout()
    out = Path(__file__).resolve().parents[1] / "docs" / "trajectory.png"
    figure.savefig(out, dpi=110)
    print(f"wrote docs/{out.name}")


if __name__ == "__main__":
    main()
