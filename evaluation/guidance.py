"""Guided sampling from a trained model: the class a user names, the guidance weight, and the model the samplers get.

`guided_model(trained, label, gamma, classifier=None)` turns a trained diffusion model into the model every sampler
takes (samplers/guidance.py, docs/samplers.md "Guidance"):

- without a classifier, classifier-free guidance of a conditional network (trained on labelled data with label
  dropout, `trained.class_names`): log s^gamma = gamma log s(. | c) + (1 - gamma) log s(. | null), one network call
  on 2B rows (samplers.classifier_free_guidance). At gamma = 1 (the conditional model) and gamma = 0 (the
  unconditional one) the other term has weight 0, so the network is called once on B rows with the label fixed
  (`FixedLabel`): the same law at half the cost;
- with a classifier of noisy sequences (`lightning fit -c configs/classifier-genre.yaml`, kind "classifier"),
  predictor guidance of the model's unconditional score: log s(. | c) = log s + gamma (log p(c | y) - log p(c | x))
  (samplers.predictor_guidance), which works for an unconditional checkpoint too.

`resolve_label` and `check_guidance` are the one-line checks of the names and weights users give.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import samplers
from evaluation.restore import TrainedModel

GUIDED_OUTPUTS = ("log_score", "log_probs")  # concrete scores (SEDD) and clean-token denoisers (RADD, MDLM)


def check_guidance(gamma: float, option: str = "--guidance") -> float:
    """gamma as a float, or ValueError (one line naming `option`) unless it is a finite number >= 0."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{option} must be a finite number >= 0 (1: the conditional model, 0: the unconditional one, "
                         f"> 1: sharper towards the class), got {gamma!r}")
    return float(gamma)


def resolve_label(name: str, class_names: tuple[str, ...] | list[str], source: str, option: str = "--label") -> int:
    """The class id of `name` among `class_names` (the classes of the checkpoint at `source`); ValueError (one line
    naming `option` and listing the names) when it is not one of them or there are none."""
    names = list(class_names)
    if not names:
        raise ValueError(f"{option} {name}: {source} was trained without labels (an unconditional model); train with "
                         "data.labels (configs/sedd-genre.yaml) or guide it with --classifier")
    if name not in names:
        raise ValueError(f"{option}: unknown label {name!r}; {source} knows {', '.join(names)}")
    return names.index(name)


class FixedLabel(nn.Module):
    """A conditional network read at one label: forward(x (B, L), total (B,) or None, where) = network(x, total,
    where=where, label=[label] * B); label = num_classes reads the unconditional model (the null label)."""

    def __init__(self, network: nn.Module, label: int) -> None:
        super().__init__()
        self.network, self.label = network, label

    def forward(self, x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        label = torch.full((x.shape[0],), self.label, dtype=torch.long, device=x.device)
        if where is None:
            return self.network(x, total, label=label)
        return self.network(x, total, where=where, label=label)


@dataclass(frozen=True)
class Guidance:
    """What steers the samples: the class (id and name), gamma, and the classifier's path (None: classifier-free)."""

    label: int
    name: str
    gamma: float
    classifier: str | None = None

    def describe(self) -> str:
        """'label NAME, guidance GAMMA[, classifier PATH]', for the samples footer."""
        text = f"label {self.name}, guidance {self.gamma:g}"
        return text if self.classifier is None else f"{text}, classifier {self.classifier}"


def check_classifier(trained: TrainedModel, classifier: TrainedModel) -> None:
    """Raise ValueError (one line naming --classifier) unless `classifier` is a classifier of the noisy sequences of
    `trained`'s chain: the same tokenizer and states (the schedule may differ; it reads sigma-bar)."""
    classifier.require_kind("classifier", "--classifier")
    if classifier.tokenizer_name != trained.tokenizer_name or classifier.vocab_size != trained.vocab_size:
        raise ValueError(f"--classifier uses tokenizer {classifier.tokenizer_name!r} (vocab_size "
                         f"{classifier.vocab_size}), --ckpt_path {trained.tokenizer_name!r} ({trained.vocab_size}); "
                         "train the classifier on the model's data")
    ours, theirs = trained.process.rate_matrix, classifier.process.rate_matrix
    if type(ours) is not type(theirs) or ours.num_states != theirs.num_states:
        raise ValueError(f"--classifier was trained on the noisy sequences of {theirs!r}, but --ckpt_path samples with "
                         f"{ours!r}; train the classifier with the model's model.rate_matrix")


def guided_model(
    trained: TrainedModel, label: int, gamma: float, classifier: TrainedModel | None = None, method: str = "auto"
) -> samplers.ConcreteScore | samplers.Denoiser:
    """The model the samplers take to draw class `label` with guidance weight gamma (module docstring).

    trained: a diffusion model (conditional unless a classifier is given); label: a class id of the conditional
    network or of the classifier; classifier: a TrainedModel of kind "classifier" (predictor guidance; method as
    samplers.predictor_guidance). Raises ValueError (one line) for another kind of model, an x0-prediction model,
    and a classifier of another chain or tokenizer.
    """
    trained.require_kind("diffusion", "guided sampling (--label)")
    gamma = check_guidance(gamma)
    output = trained.loss.output_kind
    if output not in GUIDED_OUTPUTS:
        raise ValueError(f"--label: guided sampling reads concrete scores (SEDD) or denoisers (RADD); this "
                         f"checkpoint's network outputs {output}; sample it without --label")
    if classifier is not None:
        check_classifier(trained, classifier)
        return samplers.predictor_guidance(trained.sampling_model(), classifier.network, label, gamma, method)
    null = trained.num_classes
    if not 0 <= label < null:
        raise ValueError(f"--label: class id {label} is not in [0, {null}) of {trained.source}")
    if gamma in (0.0, 1.0):  # one term: the network at one label, B rows per call
        return samplers.network_model(FixedLabel(trained.network, label if gamma == 1.0 else null), output)
    kind = samplers.ConcreteScore if output == "log_score" else samplers.Denoiser
    positions = "where" in inspect.signature(trained.network.forward).parameters
    conditional = kind(trained.network, log=True, positions=positions)
    return samplers.classifier_free_guidance(conditional, label, null, gamma)
