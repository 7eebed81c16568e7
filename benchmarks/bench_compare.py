"""This tree's loss and sampler speed against a baseline checkout of the code, side by side in one run.

    git worktree add --detach /tmp/base main
    python -m benchmarks.bench_compare --baseline /tmp/base          # about 10 minutes on 2 loaded cores

Losses: `bench_losses`' own cases (forward + backward, B=2, L=128, V=50,257), each run in a fresh subprocess of
either tree, the two trees alternating `--rounds` times per case so that both see the same machine load; the
best time of each is kept. The naive score-entropy baseline, the same code in both trees, shows the noise level.
Samplers: one step of Euler, Tweedie and tau-leaping on the absorbing and uniform chains at V = 50,257, B=4,
L=256, with a fixed random score (best of 5 calls, trees alternating). Writes benchmarks/results/compare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("score_entropy_absorbing", "ours"), ("score_entropy_uniform", "ours"), ("lambda_dce", "ours"),
         ("tdce", "ours"), ("mdlm_nelbo", "ours"), ("d3pm_absorbing", "ours"), ("d3pm_uniform", "ours"),
         ("score_entropy_absorbing", "naive")]
STEP_SCRIPT = """
import json, time, torch, ctmc, samplers
torch.set_num_threads(1)
V, B, L, out = 50_257, 4, 256, {}
for name, chain, schedule in (("absorbing", ctmc.Absorbing(V), ctmc.LogLinear()),
                              ("uniform", ctmc.Uniform(V), ctmc.Geometric(1e-4, 20.0))):
    process, g = ctmc.ForwardProcess(chain, schedule), torch.Generator().manual_seed(0)
    total = process.total(torch.full((B,), 0.5, dtype=torch.float64))
    score = torch.rand(B, L, chain.num_states, generator=g)
    score /= score.sum(-1, keepdim=True) * float(torch.expm1(total[0]))
    x = torch.randint(0, V, (B, L), generator=g)
    if name == "absorbing":
        x = torch.where(torch.rand(B, L, generator=g) < 0.5, V, x)
    t, s = torch.full((B,), 0.5, dtype=torch.float64), torch.full((B,), 0.49, dtype=torch.float64)
    output = samplers.ModelOutput(score, None, total)
    for cls in (samplers.EulerSampler, samplers.TweedieSampler, samplers.TauLeapingSampler):
        sampler, times = cls(process, steps=100), []
        for _ in range(6):
            start = time.perf_counter()
            sampler.step(output, x, t, s, g)
            times.append(time.perf_counter() - start)
        out[name + "/" + cls.__name__] = min(times[1:])
print(json.dumps(out))
"""


def _loss_command(tree: Path) -> list[str]:
    """The loss benchmark of a tree: bench_losses as a module, or an older tree's benchmarks/losses.py."""
    if (tree / "benchmarks" / "bench_losses.py").exists():
        return [sys.executable, "-m", "benchmarks.bench_losses"]
    return [sys.executable, "benchmarks/losses.py"]


def _run(tree: Path, command: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{command} in {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline code")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    losses_best: dict = {}
    print(f"{'loss':<26}{'impl':<7}{'baseline ms':>12}{'this ms':>9}{'ratio':>7}")
    for case, impl in CASES:
        for _ in range(args.rounds):
            for name, tree in trees.items():
                row = _run(tree, [*_loss_command(tree), "--run-case", case, impl, "--batch", "2", "--length", "128",
                                  "--vocab", "50257"])
                key = f"{name}|{case}|{impl}"
                losses_best[key] = min(losses_best.get(key, float("inf")), row["ms"])
        base, this = losses_best[f"baseline|{case}|{impl}"], losses_best[f"this|{case}|{impl}"]
        print(f"{case:<26}{impl:<7}{base:>12.1f}{this:>9.1f}{this / base:>7.2f}", flush=True)
    steps: dict = {}
    for _ in range(2):
        for name, tree in trees.items():
            for key, value in _run(tree, [sys.executable, "-c", STEP_SCRIPT]).items():
                steps[f"{name}|{key}"] = min(steps.get(f"{name}|{key}", float("inf")), value)
    print(f"\n{'sampler step (V=50257, B=4, L=256)':<36}{'baseline s':>11}{'this s':>8}{'ratio':>7}")
    for key in sorted({k.split("|", 1)[1] for k in steps}):
        base, this = steps[f"baseline|{key}"], steps[f"this|{key}"]
        print(f"{key:<36}{base:>11.4f}{this:>8.4f}{this / base:>7.2f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"losses_ms": losses_best, "sampler_step_s": steps}, indent=2))


if __name__ == "__main__":
    main()
