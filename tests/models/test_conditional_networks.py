"""Class-conditional networks (num_classes > 0, label=) and label dropout (models/labels.py), and the noisy-sequence
classifier (models/classifier.py).

References: the unconditional network itself (num_classes = 0 keeps exactly its parameters; a conditional network
with the unconditional weights and a zero label table computes the same outputs); the label's effect written
independently (RADD/AR: the unconditional network with the label's vector added to every row of its token table;
DiT: the unconditional network whose noise embedding is followed by adding the vector); packed rows against full
outputs; label dropout's frequency against its binomial law; the classifier's pooled logits against a per-sequence
loop and its one-hot input against token ids.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import ARTransformer, DiT, NoisyClassifier, RADDDenoiser, drop_labels

VOCAB, BATCH, LENGTH, CLASSES = 6, 4, 5, 3
SMALL = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "cond_dim": 8, "max_length": 8}


def make(cls: type[nn.Module], num_classes: int = 0) -> nn.Module:
    """A float64 network with noisy parameters (the zero-initialised heads hide nothing); same seed, same weights."""
    torch.manual_seed(0)
    arguments = dict(SMALL)
    if cls is not DiT:
        arguments.pop("cond_dim")
    model = cls(VOCAB, num_classes=num_classes, **arguments).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("label_embedding"):
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def run(model: nn.Module, x: torch.Tensor, **keywords) -> torch.Tensor:
    sigma = torch.linspace(0.2, 2.0, x.shape[0], dtype=torch.float64)
    return model(x, sigma, **keywords) if isinstance(model, DiT) else model(x, **keywords)


def tokens(cls: type[nn.Module], seed: int = 0) -> torch.Tensor:
    high = VOCAB + 1 if cls is RADDDenoiser else VOCAB  # RADD reads the mask V; DiT's vocab_size counts all states
    return torch.randint(0, high, (BATCH, LENGTH), generator=torch.Generator().manual_seed(seed))


NETWORKS = [DiT, RADDDenoiser, ARTransformer]


@pytest.mark.parametrize("cls", NETWORKS)
def test_num_classes_zero_is_the_unconditional_network(cls):
    """No new parameter, and a state dict of the default network loads strictly (old checkpoints load)."""
    default = make(cls)
    explicit = make(cls, num_classes=0)
    assert not any("label" in name for name in explicit.state_dict())
    explicit.load_state_dict(default.state_dict(), strict=True)
    with pytest.raises(ValueError, match="unconditional network"):
        run(explicit, tokens(cls), label=torch.zeros(BATCH, dtype=torch.long))


@pytest.mark.parametrize("cls", NETWORKS)
def test_zero_label_table_computes_the_unconditional_network(cls):
    """A conditional network loaded with the unconditional weights (only the label table missing) starts exactly
    at the unconditional network, for every label and for label=None."""
    unconditional = make(cls)
    conditional = make(cls, num_classes=CLASSES)
    missing, unexpected = conditional.load_state_dict(unconditional.state_dict(), strict=False)
    assert missing == ["label_embedding.table.weight"] and unexpected == []
    x = tokens(cls)
    expected = run(unconditional, x)
    for label in (None, torch.tensor([0, 1, 2, 3])):
        torch.testing.assert_close(run(conditional, x, label=label), expected, rtol=0, atol=0)


def shifted_reference(unconditional: nn.Module, vector: torch.Tensor) -> nn.Module:
    """The unconditional network with `vector` added, independently of the label code: RADD/AR add it to every row
    of the token table; DiT to the output of its noise embedding."""
    reference = type(unconditional).__new__(type(unconditional))
    reference.__dict__ = dict(unconditional.__dict__)
    reference._modules = dict(unconditional._modules)
    if isinstance(unconditional, DiT):

        class Shifted(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, sigma: torch.Tensor) -> torch.Tensor:
                return self.inner(sigma) + vector

        reference._modules["noise_embedding"] = Shifted(unconditional.noise_embedding)
    else:
        trunk = type(unconditional.trunk).__new__(type(unconditional.trunk))
        trunk.__dict__ = dict(unconditional.trunk.__dict__)
        trunk._modules = dict(unconditional.trunk._modules)
        table = nn.Embedding.from_pretrained(unconditional.trunk.embedding.weight + vector, freeze=True)
        trunk._modules["embedding"] = table
        reference._modules["trunk"] = trunk
    return reference


@pytest.mark.parametrize("cls", NETWORKS)
def test_the_label_adds_its_vector(cls):
    """Each row's output equals the reference network shifted by its label's vector (the null label's too)."""
    unconditional = make(cls)
    conditional = make(cls, num_classes=CLASSES)
    conditional.load_state_dict(unconditional.state_dict(), strict=False)
    with torch.no_grad():
        conditional.label_embedding.table.weight.normal_(generator=torch.Generator().manual_seed(2))
    x = tokens(cls)
    label = torch.tensor([2, 0, 3, 1])  # 3 is the null label
    out = run(conditional, x, label=label)
    for b in range(BATCH):
        reference = shifted_reference(unconditional, conditional.label_embedding.table.weight[label[b]].detach())
        torch.testing.assert_close(out[b], run(reference, x)[b], rtol=0, atol=1e-12)
    torch.testing.assert_close(run(conditional, x, label=torch.full((BATCH,), 3)), run(conditional, x), rtol=0, atol=0)
    assert not torch.allclose(out[0], run(conditional, x, label=torch.full((BATCH,), 0))[0])


@pytest.mark.parametrize("cls", [DiT, RADDDenoiser])
def test_packed_rows_with_labels_equal_the_full_output(cls):
    model = make(cls, num_classes=CLASSES)
    with torch.no_grad():
        model.label_embedding.table.weight.normal_(generator=torch.Generator().manual_seed(3))
    x, label = tokens(cls), torch.tensor([1, 3, 0, 2])
    where = torch.rand(BATCH, LENGTH, generator=torch.Generator().manual_seed(4)) < 0.5
    full = run(model, x, label=label)
    torch.testing.assert_close(run(model, x, label=label, where=where), full[where], rtol=0, atol=1e-12)


def test_conditional_ar_scores_and_samples_with_its_label():
    """nll(x, label) is minus the sum of forward(x, label) at the tokens; next_token_log_probs(prefix, label) is the
    forward row after the prefix."""
    model = make(ARTransformer, num_classes=CLASSES)
    with torch.no_grad():
        model.label_embedding.table.weight.normal_(generator=torch.Generator().manual_seed(5))
    x, label = tokens(ARTransformer), torch.tensor([0, 1, 2, 3])
    log_probs = model(x, label=label)
    torch.testing.assert_close(model.nll(x, label), -log_probs.gather(-1, x[..., None]).sum((1, 2)), rtol=0, atol=1e-12)
    torch.testing.assert_close(model.next_token_log_probs(x[:, :2], label), log_probs[:, 2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", NETWORKS)
def test_bad_labels_raise_one_line_errors(cls):
    model = make(cls, num_classes=CLASSES)
    x = tokens(cls)
    cases = [
        (torch.tensor([0, 1, 4, 0]), ValueError, r"label must hold class ids in \[0, 3\] \(3 is the null label\)"),
        (torch.tensor([0, -1, 0, 0]), ValueError, r"label must hold class ids in \[0, 3\]"),
        (torch.zeros(BATCH), TypeError, "label must be a \\(batch,\\) torch.long tensor"),
        (torch.zeros(BATCH + 1, dtype=torch.long), ValueError, r"label must have shape \(batch,\) = \(4,\)"),
    ]
    for label, error, message in cases:
        with pytest.raises(error, match=message):
            run(model, x, label=label)
    with pytest.raises(ValueError, match="num_classes must be an int >= 0"):
        make(cls, num_classes=-1)


def test_label_dropout_frequency_and_reproducibility():
    """Each label becomes the null label with probability p: the count of dropped labels within 5 binomial standard
    deviations of N p; the same generator seed drops the same labels; p = 0 and p = 1 are exact."""
    labels = torch.randint(0, CLASSES, (20_000,), generator=torch.Generator().manual_seed(6))
    dropped = drop_labels(labels, CLASSES, 0.3, torch.Generator().manual_seed(7))
    changed = dropped != labels
    assert bool((dropped[changed] == CLASSES).all()) and torch.equal(dropped[~changed], labels[~changed])
    count, n = int((dropped == CLASSES).sum()), labels.numel()
    assert abs(count - 0.3 * n) < 5 * math.sqrt(n * 0.3 * 0.7)
    assert torch.equal(dropped, drop_labels(labels, CLASSES, 0.3, torch.Generator().manual_seed(7)))
    assert torch.equal(drop_labels(labels, CLASSES, 0.0, None), labels)
    assert bool((drop_labels(labels, CLASSES, 1.0, None) == CLASSES).all())
    with pytest.raises(ValueError, match="probability must be a number in"):
        drop_labels(labels, CLASSES, 1.5, None)
    with pytest.raises(ValueError, match=r"labels must hold class ids in \[0, 3\]"):
        drop_labels(labels + 3, CLASSES, 0.1, None)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        drop_labels(labels, 0, 0.1, None)


def classifier() -> NoisyClassifier:
    torch.manual_seed(0)
    model = NoisyClassifier(VOCAB, CLASSES, **SMALL).double()
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def test_classifier_is_the_mean_of_per_position_logits_per_sequence():
    """log_softmax of the mean over positions of the trunk's per-position class logits, each sequence on its own
    (no mixing across the batch), normalised; uniform at initialisation (zero head)."""
    model = classifier()
    x, sigma = tokens(DiT), torch.linspace(0.1, 3.0, BATCH, dtype=torch.float64)
    out = model(x, sigma)
    for b in range(BATCH):
        per_position = model.trunk(x[b : b + 1], model.noise_embedding(sigma[b : b + 1]))[0]  # (L, C)
        torch.testing.assert_close(out[b], torch.log_softmax(per_position.mean(0), -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(BATCH, dtype=torch.float64), rtol=0, atol=1e-12)
    fresh = NoisyClassifier(VOCAB, CLASSES, **SMALL)(x, sigma.float())
    torch.testing.assert_close(fresh, torch.full_like(fresh, -math.log(CLASSES)))
    assert not torch.allclose(out, model(x, sigma.flip(0)))  # the noise level reaches the output


def test_classifier_one_hot_input_equals_tokens_and_has_a_gradient():
    model = classifier()
    x, sigma = tokens(DiT), torch.full((BATCH,), 0.7, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(x, VOCAB).double().requires_grad_(True)
    out = model(onehot, sigma)
    torch.testing.assert_close(out, model(x, sigma), rtol=0, atol=1e-12)
    (gradient,) = torch.autograd.grad(out[:, 1].sum(), onehot)
    assert gradient.shape == onehot.shape and bool(gradient.abs().sum(-1).gt(0).all())


def test_classifier_bad_input():
    model = classifier()
    sigma = torch.ones(BATCH, dtype=torch.float64)
    with pytest.raises(ValueError, match="x as float weights must have shape"):
        model(torch.zeros(BATCH, LENGTH, VOCAB + 1, dtype=torch.float64), sigma)
    with pytest.raises(ValueError, match=r"must hold token ids in \[0, 6\)"):
        model(torch.full((BATCH, LENGTH), VOCAB), sigma)
    with pytest.raises(ValueError, match="sigma must be a"):
        model(tokens(DiT), torch.ones(BATCH + 1))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        NoisyClassifier(VOCAB, 1)
