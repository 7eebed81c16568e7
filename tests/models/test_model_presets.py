"""Presets and parameter counts. References: SEDD's configs/model/{small,medium}.yaml, a closed-form count
of the DiT parameters, and the table in docs/models.md (every number there is checked here)."""

from pathlib import Path

import pytest
import torch

from models import PRESETS, ARTransformer, DiT, ModelSize, RADDDenoiser, count_parameters

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"

# Measured with the code below (construction on the 'meta' device), GPT-2 vocabulary: DiT over 50,257 tokens
# + the mask = 50,258 states, RADD over the 50,257 clean tokens; max_length 1024 (RoPE adds no parameters).
DOCUMENTED_COUNTS = {
    # preset: (DiT untied, DiT tied, RADD untied, RADD tied)
    "tiny": (6_621_394, 3_404_882, 6_582_801, 3_366_353),
    "small": (169_627_218, 131_029_074, 162_264_913, 123_667_537),
    "medium": (424_477_010, 373_012_818, 405_190_737, 353_727_569),
}


def test_preset_sizes_follow_sedd_configs() -> None:
    assert PRESETS["small"] == ModelSize(hidden_size=768, num_layers=12, num_heads=12, cond_dim=128)
    assert PRESETS["medium"] == ModelSize(hidden_size=1024, num_layers=24, num_heads=16, cond_dim=128)
    assert PRESETS["tiny"].hidden_size <= 64


@pytest.mark.parametrize("name", sorted(DOCUMENTED_COUNTS))
def test_presets_have_the_documented_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        measured = (
            DiT.from_preset(name, 50_258, max_length=1024).num_parameters,
            DiT.from_preset(name, 50_258, max_length=1024, tie_weights=True).num_parameters,
            RADDDenoiser.from_preset(name, 50_257, max_length=1024).num_parameters,
            RADDDenoiser.from_preset(name, 50_257, max_length=1024, tie_weights=True).num_parameters,
        )
    assert measured == DOCUMENTED_COUNTS[name]
    docs = DOCS.read_text()
    for count in measured:
        assert f"{count:,}" in docs, f"{count:,} missing from {DOCS}"


def test_dit_count_matches_closed_form() -> None:
    """N H embedding + (256 C + C + C^2 + C) noise MLP + layers (4 H^2 + 2 r H^2 + (r + 1) H + 2 H + 6 H (C + 1))
    + H + 2 H (C + 1) final adaLN + N H + N head; no biases in attention, no LayerNorm bias under adaLN."""
    vocab, hidden, layers, cond, ratio = 37, 32, 3, 16, 2
    model = DiT(vocab, hidden_size=hidden, num_layers=layers, num_heads=2, cond_dim=cond, mlp_ratio=ratio)
    noise = 256 * cond + cond + cond * cond + cond
    per_layer = 4 * hidden**2 + 2 * ratio * hidden**2 + (ratio + 1) * hidden + 2 * hidden + 6 * hidden * (cond + 1)
    final = hidden + 2 * hidden * (cond + 1)
    expected = vocab * hidden + noise + layers * per_layer + final + vocab * hidden + vocab
    assert count_parameters(model) == model.num_parameters == expected


def test_tied_weights_are_counted_once() -> None:
    untied, tied = DiT(20, hidden_size=32), DiT(20, hidden_size=32, tie_weights=True)
    assert untied.num_parameters - tied.num_parameters == 20 * 32


def test_overrides_and_radd_ignores_cond_dim() -> None:
    dit = DiT.from_preset("tiny", 12, num_layers=3, absorbing_parameterization=True)
    assert len(dit.trunk.blocks) == 3 and dit.absorbing_parameterization
    radd = RADDDenoiser.from_preset("tiny", 12, cond_dim=999)
    assert len(radd.trunk.blocks) == PRESETS["tiny"].num_layers


@pytest.mark.parametrize("model_class", [DiT, RADDDenoiser])
def test_unknown_preset_lists_valid_names(model_class: type) -> None:
    with pytest.raises(ValueError, match=r"unknown model preset 'huge'.*\['medium', 'small', 'tiny'\]"):
        model_class.from_preset("huge", 10)


@pytest.mark.parametrize("name", sorted(DOCUMENTED_COUNTS))
def test_ar_presets_have_the_radd_counts_printed_in_the_ar_table(name: str) -> None:
    """The AR model has the RADD shapes (V + 1 embedding rows, V outputs, no conditioning)."""
    with torch.device("meta"):
        measured = (
            ARTransformer.from_preset(name, 50_257, max_length=1024).num_parameters,
            ARTransformer.from_preset(name, 50_257, max_length=1024, tie_weights=True).num_parameters,
        )
    assert measured == DOCUMENTED_COUNTS[name][2:]
    dit = DOCUMENTED_COUNTS[name][0]
    row = f"| `{name}` | {measured[0]:,} | {measured[1]:,} | {measured[0]:,} | {dit:,} | {dit / measured[0]:.3f} |"
    assert row in DOCS.read_text(), f"AR table row {row} missing from {DOCS}"
