"""`lightning sample` past the trained seq_len, and `--stop`, in-process on tiny 2-step checkpoints (seq_len 16).

References: the library samplers called directly with the same generator (samplers.BlockSampler with and
without its key/value cache, samplers.SemiAutoregressiveSampler, samplers.ancestral_sample with a context of
seq_len - 1): the command must give exactly their tokens; call counts written out by hand (first-hitting draws
one token per call); the token ids of the prompt (the char tokenizer maps a character to its byte).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import make_checkpoint

import ctmc
import samplers
from cli.main import main
from evaluation.generation import generate_samples
from evaluation.restore import load_trained

EOT = 256  # the char tokenizer's end-of-text id
PROMPT = [ord(c) for c in "Line "]


def sample(checkpoint: Path, *options: str):
    return main(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", *options])


def process_of(checkpoint: Path) -> ctmc.ForwardProcess:
    return load_trained(checkpoint).process


def boosted(checkpoint: Path, directory: Path, bias: float = 6.0) -> Path:
    """A copy of `checkpoint` whose EMA output bias favours end-of-text by `bias` nats (so that rows stop)."""
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"] = dict(state["state_dict"])
    key = next(key for key in state["state_dict"] if key.startswith("ema.") and key.endswith("output_bias"))
    state["state_dict"][key] = state["state_dict"][key].clone()
    state["state_dict"][key][EOT] += bias
    path = directory / f"boosted-{checkpoint.parent.parent.parent.parent.parent.name}.ckpt"
    torch.save(state, path)
    return path


def test_a_block_model_writes_past_seq_len_block_by_block(block_checkpoint, tmp_path):
    output = tmp_path / "samples.txt"
    result = sample(block_checkpoint, "--length=40", "--sampler=first-hitting", "--prefix=Line ", "--num_samples=3",
                    f"--output={output}")
    assert result.tokens.shape == (3, 40) and torch.equal(result.tokens[:, :5], torch.tensor([PROMPT] * 3))
    assert result.nfe == 40 - 5  # exact first-hitting: one call per generated token, the encodings not counted
    assert "first-hitting, exact, block by block (4 tokens, context 16), 3 x 40 tokens" in output.read_text()
    trained = load_trained(block_checkpoint)
    inner = samplers.FirstHittingSampler(trained.process)
    for cache in (True, False):  # the command's samples, and the same without the key/value cache
        direct = samplers.BlockSampler(inner, 4, max_length=16, cache=cache).generate(
            trained.network, 3, 40, prefix=torch.tensor(PROMPT), generator=torch.Generator().manual_seed(0))
        assert torch.equal(direct.tokens, result.tokens), cache


@pytest.mark.parametrize("fixture", ["block_checkpoint", "radd_checkpoint", "ar_checkpoint"])
def test_stop_ends_each_sample_at_its_first_generated_end_of_text(fixture, request, tmp_path, capsys):
    checkpoint = boosted(request.getfixturevalue(fixture), tmp_path)
    result = sample(checkpoint, "--length=48", "--stop", "--num_samples=6", "--prefix=Line ", "--seed=1",
                    *(() if fixture == "ar_checkpoint" else ("--sampler=first-hitting",)))
    printed = capsys.readouterr().out
    assert len(result.lengths) == 6 and min(result.lengths) < 48  # the boosted end-of-text stops some rows
    for row, length in zip(result.tokens, result.lengths, strict=True):
        generated = row[5:length]
        assert not bool((generated[:-1] == EOT).any())  # no stop before the last kept token
        assert length == 48 or int(row[length - 1]) == EOT
        assert bool((row[length:] == EOT).all())  # the rest of the row reads end-of-text
        assert f"=== sample {result.lengths.index(length)}: {length} tokens," in printed


def test_plain_masked_models_write_past_seq_len_in_semi_autoregressive_windows(sedd_checkpoint, radd_checkpoint):
    for checkpoint in (sedd_checkpoint, radd_checkpoint):
        result = sample(checkpoint, "--length=40", "--stride=8", "--sampler=first-hitting", "--prefix=Line ",
                        "--num_samples=2")
        assert result.tokens.shape == (2, 40) and torch.equal(result.tokens[:, :5], torch.tensor([PROMPT] * 2))
        trained = load_trained(checkpoint)
        semi = samplers.SemiAutoregressiveSampler(samplers.FirstHittingSampler(trained.process), 8, 16)
        direct = semi.generate(trained.sampling_model(), 2, 40, prefix=torch.tensor(PROMPT),
                               generator=torch.Generator().manual_seed(0))
        assert torch.equal(direct.tokens, result.tokens)
        assert result.how == "semi-autoregressive windows (16 tokens, 8 new each)"
        if checkpoint == sedd_checkpoint:  # a time-dependent score is never cached: 11 + 3 x 8 calls by hand
            assert result.nfe == (16 - 5) + 3 * 8
    default = sample(radd_checkpoint, "--length=24", "--steps=2", "--num_samples=2")
    assert default.tokens.shape == (2, 24) and default.how.endswith("(16 tokens, 8 new each)")  # stride seq_len // 2


def test_the_ar_model_slides_its_context(ar_checkpoint):
    result = sample(ar_checkpoint, "--length=40", "--num_samples=2", "--prefix=Line ")
    trained = load_trained(ar_checkpoint)
    direct = samplers.ancestral_sample(trained.network.next_token_log_probs, 2, 40, prefix=torch.tensor(PROMPT),
                                       generator=torch.Generator().manual_seed(0), context=15)
    assert torch.equal(result.tokens, direct.tokens) and result.nfe == 35 and result.how == "sliding context"


def test_a_uniform_chain_model_is_refused_past_seq_len(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "uniform", "sedd-uniform.yaml", "models.DiT")
    assert sample(checkpoint, "--length=16", "--steps=2", "--num_samples=2").tokens.shape == (2, 16)
    output = tmp_path / "out.txt"
    with pytest.raises(SystemExit) as exit_info:
        sample(checkpoint, "--length=17", f"--output={output}")
    line = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in line and not output.exists()
    assert "--length 17 is past the seq_len=16" in line and "configs/bd3lm.yaml" in line


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--length=0"], "--length must be a positive integer"),
        (["--length=-3"], "--length must be a positive integer"),
        (["--length=4.5"], "--length: invalid int value"),
        (["--length=40", "--prefix=" + "x" * 17], "more than the seq_len=16 positions the model reads at once"),
        (["--length=40", "--prefix=" + "x" * 41], "more than --length 40"),
        (["--length=40", "--stride=4"], "--stride"),
        (["--length=40", "--suffix=end"], "use --prefix only"),
        (["--infill=a[MASK]b"], "use --prefix only"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(block_checkpoint, options, fragment, tmp_path, capsys):
    output = tmp_path / "samples.txt"
    with pytest.raises(SystemExit) as exit_info:
        sample(block_checkpoint, *options, f"--output={output}")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not output.exists()


def test_a_block_model_refuses_a_guided_sampling_model(block_checkpoint):
    trained = load_trained(block_checkpoint)
    sampler = samplers.FirstHittingSampler(trained.process)
    with pytest.raises(ValueError, match="block diffusion model is sampled block by block from its own network"):
        generate_samples(trained, sampler, 2, 8, 0, sampling_model=samplers.network_model(trained.network, "log_probs"))
