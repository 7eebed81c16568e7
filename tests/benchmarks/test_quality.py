"""benchmarks/quality.py end to end on tiny settings (1-layer, 32-wide networks, byte tokenizer, 16-token
blocks, 2 training steps, 2 samples, NFE budgets 4 and 16): the AR judge is fitted by the script's own
subprocess, the diffusion models (block diffusion at block sizes 1 and 4 among them) and the longer budget (2x:
the AR model and block size 4) are fitted here in-process and handed over with --ckpt (the subprocess start-up
of every fit would triple the test's time). Checks the JSON's structure against the sampler plan written out by
hand (per block for the block models), that every number is finite, that the cache and no-cache block samples
agree, and that the written samples files read back with `evaluate --judge`.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import quality
from cli.main import main as cli_main
from evaluation.judge import read_samples

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(60))
NETWORKS = {"sedd": "models.DiT", "radd": "models.RADDDenoiser", "sedd-uniform": "models.DiT",
            "bd3lm-1": "models.BlockDenoiser", "bd3lm-4": "models.BlockDenoiser"}
MODELS = ["ar", *NETWORKS]


def tiny(corpus: Path) -> list[str]:
    """Overrides that every fit shares (quality.py passes them to its own fits with --fit_arg)."""
    return [f"--data.paths={corpus}", "--data.tokenizer=char", "--data.seq_len=16", "--data.batch_size=4",
            "--model.network.hidden_size=32", "--model.network.num_layers=1", "--model.network.num_heads=2",
            "--model.network.max_length=32", "--trainer.enable_model_summary=false"]


def fit_here(run: quality.Run, corpus: Path, root: Path) -> Path:
    """last.ckpt of a 2 x factor step in-process fit of `run` with the tiny overrides (the block size of bd3lm-S)."""
    size = [] if run.block_size is None else [f"--model.network.init_args.block_size={run.block_size}",
                                              f"--model.loss.init_args.block_size={run.block_size}"]
    cli_main(["fit", "-c", str(CONFIGS / Path(run.config).name), *tiny(corpus), *size,
              f"--trainer.max_steps={2 * run.factor}", f"--trainer.default_root_dir={root / run.name}",
              "--trainer.enable_progress_bar=false"])
    (checkpoint,) = (root / run.name).glob("lightning_logs/version_*/checkpoints/last.ckpt")
    return checkpoint


def finite_numbers(value: object) -> list[float]:
    """Every int/float in a JSON value (bools and None excluded)."""
    if isinstance(value, dict):
        return [number for item in value.values() for number in finite_numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in finite_numbers(item)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_quality_runs_end_to_end_on_tiny_settings(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    runs = [quality.Run(name) for name in NETWORKS] + [quality.Run(name, 2) for name in ("ar", "bd3lm-4")]
    checkpoints = {run.name: fit_here(run, corpus, tmp_path / "here") for run in runs}
    out = tmp_path / "quality.json"
    work = tmp_path / "work"
    argv = [
        "--steps=2", *(f"--fit_arg={item}" for item in tiny(corpus)), "--threads=1", "--models", *MODELS,
        "--longer=2", "--longer_models", "ar", "bd3lm-4", "--cache_length=24",
        *(f"--ckpt={name}={path}" for name, path in checkpoints.items()),
        "--val_blocks=8", "--orders=2", "--order_blocks=3", "--nfe", "4", "16", "--num_samples=2", "--batch=4",
        f"--out={out}", f"--work_dir={work}",
    ]
    quality.main(argv)
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "training", "validation", "samples", "references", "cache", "seconds"}
    assert list(report["training"]) == [*MODELS, "ar-x2", "bd3lm-4-x2"]
    judge = report["training"]["ar"]
    assert judge["steps"] == 2 and judge["wall_s"] > 0 and not judge["reused"] and "--trainer.max_steps=2" in (
        judge["command"])
    assert all(report["training"][run.name]["reused"] for run in runs)
    assert [report["training"][run.name]["steps"] for run in runs] == [2] * len(NETWORKS) + [4, 4]  # read back

    validation = report["validation"]
    assert validation["ar"]["what"] == "exact NLL" and validation["ar"]["gap_ppl_ratio"] is None
    assert validation["ar"]["prior_nats_per_token"] == 0.0 and validation["ar-x2"]["gap_ppl_ratio"] is None
    for name in [*NETWORKS, "bd3lm-4-x2"]:
        assert validation[name]["blocks"] == 8 and validation[name]["seq_len"] == 16
        assert validation[name]["gap_ppl_ratio"] > 0 and validation[name]["prior_nats_per_token"] > 0
    fixed = validation["radd"]["fixed_order"]
    assert fixed["orders"] == 2 and fixed["blocks"] == 3
    assert validation["sedd"]["fixed_order"] is None

    # The plan at L = 16, by hand. Whole sequences, budget 4: N - 1 = 3 steps, trapezoidal (N - 1) // 2 = 1,
    # first-hitting 4; budget 16: 15, 7 and first-hitting exact. Block size 4 (4 blocks): budget 4 is 1 call a
    # block (first-hitting 1 step only), 16 is 4 (3 steps, trapezoidal 1, first-hitting exact); block size 1 (16
    # blocks): budget 16 is 1 call a block (first-hitting exact, one token), 4 is left out.
    whole = {"euler": [3, 15], "tweedie": [3, 15], "tau-leaping": [3, 15], "trapezoidal": [1, 7],
             "first-hitting": [4, None]}
    per_block = {"bd3lm-4": {"euler": [3], "tweedie": [3], "tau-leaping": [3], "trapezoidal": [1],
                             "first-hitting": [1, None]},
                 "bd3lm-1": {"first-hitting": [None]}}
    expected = []
    for name in NETWORKS:
        plan = per_block.get(name, whole)
        expected += [(name, sampler, steps) for sampler in plan for steps in plan[sampler]
                     if not (name == "sedd-uniform" and sampler == "first-hitting")]
    assert [(row["model"], row["sampler"], row["steps"]) for row in report["samples"]] == expected
    for row in report["samples"]:
        assert row["num_samples"] == 2 and row["length"] == 16 and row["nfe"] >= 1
        texts, nfe = read_samples(str(work / row["samples_file"]))
        assert len(texts) == 2 and nfe == row["nfe"]
        if row["model"].startswith("bd3lm") and row["sampler"] == "first-hitting" and row["steps"] is None:
            assert row["nfe"] == 16  # exact block sampling: one call per token
    assert [row["model"] for row in report["references"]] == ["ar", "data"]
    assert report["references"][0]["nfe"] == 16 and report["references"][1]["num_samples"] == 8
    cache = report["cache"]
    assert [(row["model"], row["length"], row["context"], row["nfe"]) for row in cache] == [
        ("bd3lm-1", 24, 16, 24), ("bd3lm-4", 24, 16, 24)]
    assert all(row["same_samples_float64"] and row["seconds_cached"] > 0 for row in cache)
    assert all(0 <= row["max_log_prob_difference"] < 1e-4 and 0 <= row["token_agreement"] <= 1 for row in cache)

    numbers = finite_numbers({key: report[key] for key in ("validation", "samples", "references", "cache", "seconds")})
    assert numbers and all(math.isfinite(number) for number in numbers)
    assert 0 < report["settings"]["unigram_bits_per_token"] < 9  # log2(257) = 8.006 for the byte tokenizer
    table = (work / "results.md").read_text()
    assert "| radd | configs/radd.yaml |" in table and "| sedd-uniform | tau-leaping | 4 | 3 |" in table
    assert "| bd3lm-4 | 4 |" in table and "| bd3lm-4 | 2 |" in table and "| bd3lm-1 | 1 | 24 |" in table
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (work / "quality.png").is_file() == has_matplotlib == (report["settings"]["plot"] is not None)
    assert (work / "quality_blocks.png").is_file() == has_matplotlib

    # --reuse: the judge's checkpoint and fit record are read back, and every seeded number comes out the same
    quality.main([*argv, "--reuse"])
    again = json.loads(out.read_text())
    assert again["training"]["ar"] == {**judge, "reused": True}
    for key in ("validation", "samples", "references"):
        assert strip_seconds(again[key]) == strip_seconds(report[key])


def strip_seconds(value: object) -> object:
    """`value` without the wall-time entries (the only numbers that differ between two runs)."""
    if isinstance(value, dict):
        return {key: strip_seconds(item) for key, item in value.items() if "seconds" not in key}
    if isinstance(value, list):
        return [strip_seconds(item) for item in value]
    return value


def test_sampler_plan_by_hand():
    absorbing = SimpleNamespace(process=SimpleNamespace(rate_matrix=SimpleNamespace(score_factorises=True)))
    uniform = SimpleNamespace(process=SimpleNamespace(rate_matrix=SimpleNamespace(score_factorises=False)))
    plan = quality.sampler_plan(absorbing, [8, 32, 64], 32, None)
    assert [item for item in plan if item[0] == "euler"] == [("euler", 8, 7), ("euler", 32, 31), ("euler", 64, 63)]
    assert [item for item in plan if item[0] == "trapezoidal"] == [
        ("trapezoidal", 8, 3), ("trapezoidal", 32, 15), ("trapezoidal", 64, 31)]
    # first-hitting: parallel below L, exact (one token per call) at L, and a budget above L is the same sampler
    assert [item for item in plan if item[0] == "first-hitting"] == [
        ("first-hitting", 8, 8), ("first-hitting", 32, None)]
    assert {item[0] for item in quality.sampler_plan(uniform, [8], 32, None)} == set(quality.SAMPLERS_ANY_CHAIN)
    assert quality.sampler_plan(absorbing, [2], 32, ["trapezoidal"]) == []  # (2 - 1) // 2 = 0 steps: left out
    # a block model of block size 4 at L = 32 (8 blocks): a budget is shared by the blocks, n = N / 8 calls each
    blocks = SimpleNamespace(process=absorbing.process, block_size=4)
    plan = quality.sampler_plan(blocks, [4, 8, 32, 64], 32, ["euler", "first-hitting"])
    assert plan == [("euler", 32, 3), ("euler", 64, 7), ("first-hitting", 8, 1), ("first-hitting", 32, None)]


def test_models_trained_on_other_data_are_refused():
    data = {"ar": {"tokenizer": "gpt2", "seq_len": 32}, "sedd": {"tokenizer": "gpt2", "seq_len": 64}}
    with pytest.raises(SystemExit, match=r"--ckpt sedd: trained with data\.seq_len=64, the judge"):
        quality.check_same_data({}, data)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--ckpt=gpt=x.ckpt"], "write NAME=PATH with NAME one of ar, sedd, radd, sedd-uniform, bd3lm-1"),
    (["--models", "sedd", "ar"], "--models must start with ar"),
    (["--longer_models", "ar", "gpt"], "--longer_models 'gpt'"),
    (["--ckpt=sedd=missing.ckpt"], "does not exist"),
    (["--num_samples=1"], "--num_samples must be >= 2"),
    (["--samplers", "rk2"], "--samplers 'rk2'"),
    (["--order_models", "ar"], "--order_models 'ar'"),
])
def test_bad_options_are_one_line_errors(argv, fragment, tmp_path):
    with pytest.raises(SystemExit, match=fragment) as error:
        quality.main([*argv, f"--work_dir={tmp_path}", f"--out={tmp_path / 'q.json'}"])
    assert "\n" not in str(error.value)
