"""The commands on released and exported models: `lightning sample` / `evaluate` with --ckpt_path DIR (SEDD, RADD
and MDLM directories written in each reference's layout with random weights, tests/pretrained_reference.py),
`lightning export` then models.from_pretrained to the same outputs, `lightning fit --init_from DIR` (20 steps of
fine-tuning from the released weights), and every bad input as one line and exit status 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, TEXT, one_line_error, tiny_args, tiny_corpus
from pretrained_reference import (
    TINY,
    mdlm_hub_config,
    radd_config,
    random_weights,
    sedd_config,
    tokens_with_masks,
    write_hub,
)

from cli.main import main
from evaluation.restore import load_trained
from models import from_pretrained

GPT2 = 50257  # the released models' tokens: GPT-2 BPE


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    """Tiny SEDD, RADD and MDLM directories over GPT-2's vocabulary, and a text to evaluate."""
    root = tmp_path_factory.mktemp("released")
    size = (TINY["hidden"], TINY["n_heads"], TINY["n_blocks"])
    sedd = write_hub(root / "sedd", sedd_config(GPT2), random_weights(*size, TINY["cond"], GPT2 + 1, seed=1))
    radd = write_hub(root / "radd", radd_config(GPT2), random_weights(*size, None, GPT2 + 1, seed=2))
    mdlm_weights = {"backbone." + key: value for key, value in
                    random_weights(*size, TINY["cond"], GPT2 + 1, seed=3).items()}
    mdlm = write_hub(root / "mdlm", mdlm_hub_config(GPT2 + 1), mdlm_weights)
    text = root / "text.txt"
    text.write_text(TEXT[:600], encoding="utf-8")
    return {"sedd": sedd, "radd": radd, "mdlm": mdlm, "text": text}




@pytest.mark.parametrize("layout", ["sedd", "radd", "mdlm"])
def test_sample_and_evaluate_run_on_a_released_directory(layout, released, tmp_path):
    samples = main(["sample", f"--ckpt_path={released[layout]}", "--device=cpu", "--steps=3", "--num_samples=2",
                    "--length=8", f"--output={tmp_path / 's.txt'}"])
    assert samples.tokens.shape == (2, 8)
    options = ["--order=left-to-right"] if layout != "sedd" else []
    result = main(["evaluate", f"--ckpt_path={released[layout]}", f"--text={released['text']}", "--device=cpu",
                   "--time_samples=2", "--json", f"--output={tmp_path / 'e.json'}", *options])
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["seq_len"] == TINY["length"] and report["bits_per_token_se"] > 0
    assert math.isfinite(result.bits_per_token) and result.prior_nats_per_token > 0  # the t = 1 term is included
    assert result.training_unigram_nats_per_token is None  # a released model brings no training data
    if options:  # the denoisers' exact fixed-order likelihood beside the bound
        assert math.isfinite(result.order_bits_per_token)


def test_export_then_from_pretrained_gives_the_same_outputs(tmp_path, capsys):
    from fit_helpers import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "run")
    out = tmp_path / "shared"
    main(["export", f"--ckpt_path={checkpoint}", f"--out={out}"])
    assert sorted(path.name for path in out.iterdir()) == ["config.json", "model.safetensors"]
    original = load_trained(checkpoint).network
    loaded = from_pretrained(out)
    assert type(loaded) is type(original) and loaded.pretrained.layout == "native"
    x = torch.randint(0, 258, (3, 16), generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 1.0, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sigma), original(x, sigma), rtol=0, atol=0)
    a = main(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--steps=2", "--num_samples=2",
              f"--output={tmp_path / 'a.txt'}"])
    b = main(["sample", f"--ckpt_path={out}", "--device=cpu", "--steps=2", "--num_samples=2",
              f"--output={tmp_path / 'b.txt'}"])
    assert torch.equal(a.tokens, b.tokens)
    capsys.readouterr()  # the fit's own log lines
    assert "exists and is not an empty directory" in one_line_error(
        capsys, ["export", f"--ckpt_path={checkpoint}", f"--out={out}"])


def finetune_args(corpus: Path, steps: int) -> list[str]:
    """The main job's config reshaped to the tiny released SEDD (16 wide, 2 blocks, 2 heads, cond 8, GPT-2)."""
    args = [item for item in tiny_args(corpus, steps=steps) if not item.startswith(
        ("--model.network.hidden_size", "--model.network.num_layers", "--model.network.num_heads",
         "--model.network.cond_dim", "--data.tokenizer", "--data.seq_len"))]
    return [*args, f"--model.network.hidden_size={TINY['hidden']}", f"--model.network.num_layers={TINY['n_blocks']}",
            f"--model.network.num_heads={TINY['n_heads']}", f"--model.network.cond_dim={TINY['cond']}",
            "--model.network.local_mixing=0", "--data.tokenizer=gpt2", f"--data.seq_len={TINY['length']}"]


def test_fine_tuning_from_a_released_sedd_runs_20_steps(released, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path, TEXT * 3)
    cli = main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *finetune_args(corpus, 20), f"--init_from={released['sedd']}"])
    assert cli.trainer.global_step == 20 and cli.model.initialised_from == str(released["sedd"])
    start = from_pretrained(released["sedd"]).state_dict()
    trained = cli.model.network.state_dict()
    assert any(not torch.equal(start[key], trained[key]) for key in start)  # it trained from there


def test_initialise_from_copies_every_weight_into_network_and_average(released, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path, TEXT * 3)
    cli = main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *finetune_args(corpus, 0), f"--init_from={released['sedd']}",
                "--trainer.max_steps=0"])
    start = from_pretrained(released["sedd"])
    x = tokens_with_masks(2, TINY["length"], GPT2, seed=5)
    sigma = torch.tensor([0.5, 2.0])
    with torch.no_grad():
        for network in (cli.model.network, cli.model.ema):
            torch.testing.assert_close(network.eval()(x, sigma), start(x, sigma), rtol=0, atol=0)


def test_bad_released_inputs_are_one_line_errors(released, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert "without config.json" in one_line_error(capsys, ["sample", f"--ckpt_path={tmp_path / 'empty'}"])
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "config.json").write_text(json.dumps({"architectures": ["GPT2"]}))
    assert "unknown layout" in one_line_error(capsys, ["sample", f"--ckpt_path={tmp_path / 'unknown'}"])
    weights = random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], GPT2 + 1, seed=1)
    missing = dict(weights)
    missing.pop("blocks.0.attn_qkv.weight")
    write_hub(tmp_path / "missing", sedd_config(GPT2), missing)
    line = one_line_error(capsys, ["evaluate", f"--ckpt_path={tmp_path / 'missing'}", f"--text={released['text']}"])
    assert "blocks.0.attn_qkv.weight" in line and "model.safetensors" in line
    write_hub(tmp_path / "extra", sedd_config(GPT2), {**weights, "blocks.0.extra": torch.zeros(1)})
    assert "blocks.0.extra" in one_line_error(capsys, ["sample", f"--ckpt_path={tmp_path / 'extra'}"])
    shaped = {**weights, "blocks.0.attn_out.weight": torch.zeros(3, 3)}
    write_hub(tmp_path / "shaped", sedd_config(GPT2), shaped)
    assert "blocks.0.attn_out.weight" in one_line_error(capsys, ["sample", f"--ckpt_path={tmp_path / 'shaped'}"])
    small = random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], 301, seed=1)
    write_hub(tmp_path / "vocab", sedd_config(300), small)
    assert "tokenizer" in one_line_error(capsys, ["sample", f"--ckpt_path={tmp_path / 'vocab'}"])
    corpus = tiny_corpus(tmp_path)
    char = [item for item in finetune_args(corpus, 2) if not item.startswith("--data.tokenizer")]
    line = one_line_error(capsys, ["fit", "-c", str(CONFIGS / "sedd.yaml"), *char, "--data.tokenizer=char",
                                   f"--init_from={released['sedd']}"])
    assert "--init_from" in line and "states" in line
    line = one_line_error(capsys, ["fit", "-c", str(CONFIGS / "sedd.yaml"), *finetune_args(corpus, 2),
                                   "--model.network.hidden_size=32", f"--init_from={released['sedd']}"])
    assert "--init_from" in line and "shape" in line
    assert not list(tmp_path.glob("logs/**/*.ckpt"))  # nothing trained, nothing written
