"""Samples from a trained model: the sampler a user names, and text drawn with it under a prompt.

- `sampler_classes`, `resolve_sampler`, `build_sampler`: a `samplers.Sampler` by its `name` (euler,
  tau-leaping, tweedie, first-hitting, ...) or a dotted class path, built with keyword options that are checked
  against its constructor.
- `generate_samples`: sequences from a diffusion model's EMA weights, a prompt template (evaluation.prompts) held
  fixed, decoded, with each sample's unigram entropy (a collapsing model repeats tokens and shows a low entropy)
  and the number of network calls (NFE); `format_samples` prints them as `lightning sample` does.
- `draw_samples`: timed samples of any model (ancestral for an autoregressive one), for the AR judge.
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import samplers
from evaluation.prompts import conditioning
from evaluation.restore import TrainedModel

SAMPLER_OPTION = "--sampler_option"

def sampler_classes() -> dict[str, type[samplers.Sampler]]:
    """name -> class for every `samplers.Sampler` subclass that the samplers package exports with a `name`.

    A sampler added to `samplers.__all__` with a class attribute `name` is a `--sampler` choice, unedited here.
    """
    exported = (getattr(samplers, export) for export in samplers.__all__)
    return {
        value.name: value
        for value in exported
        if isinstance(value, type)
        and issubclass(value, samplers.Sampler)
        and isinstance(getattr(value, "name", None), str)
    }

def resolve_sampler(text: str) -> type[samplers.Sampler]:
    """The sampler class named `text`: a `name` of sampler_classes() or a dotted path `package.module.Class`."""
    classes = sampler_classes()
    if text in classes:
        return classes[text]
    choices = ", ".join(sorted(classes))
    module_name, _, class_name = text.rpartition(".")
    if not module_name:
        raise ValueError(f"--sampler: unknown sampler {text!r}; use one of {choices} or a dotted class path "
                         "such as samplers.EulerSampler")
    try:
        value = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"--sampler: cannot import {text!r}; use one of {choices} or an importable "
                         "dotted class path such as samplers.EulerSampler") from None
    if not (isinstance(value, type) and issubclass(value, samplers.Sampler)):
        raise ValueError(f"--sampler: {text!r} is not a samplers.Sampler subclass; use one of {choices}")
    return value

def constructor_keys(sampler_class: type[samplers.Sampler]) -> list[str]:
    """The keyword arguments the constructor of `sampler_class` accepts after the process, following
    **kwargs up the class hierarchy (a subclass that forwards its options to Sampler accepts Sampler's)."""
    keys: list[str] = []
    for klass in sampler_class.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[2:]  # self, process
        named = (p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        keys.extend(name for name in named if name not in keys)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return keys

def build_sampler(
    sampler_class: type[samplers.Sampler], process: Any, options: dict[str, Any], label: str
) -> samplers.Sampler:
    """sampler_class(process, **options), with a one-line error naming a key the constructor does not take."""
    accepted = constructor_keys(sampler_class)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(
            f"{SAMPLER_OPTION} {unknown[0]}: the sampler {label} takes no option {unknown[0]!r}; "
            f"its options are {', '.join(accepted)}"
        )
    return sampler_class(process, **options)

@dataclass
class Samples:
    """texts: the decoded samples; tokens: (B, L) long; entropies: per-sample unigram entropy (nats) of the
    generated (non-prompt) positions; nfe: network evaluations per sequence (row-evaluations / batch size,
    so that a per-row cache stays comparable; samplers.SamplingResult)."""

    texts: list[str]
    tokens: Tensor
    entropies: list[float]
    nfe: float

def generate_samples(
    trained: TrainedModel,
    sampler: samplers.Sampler,
    num_samples: int,
    length: int,
    seed: int,
    template: str | None = None,
    sampling_model: samplers.ConcreteScore | samplers.Denoiser | None = None,
) -> Samples:
    """num_samples sequences of `length` tokens from the EMA weights, the prompt `template` held fixed.
    sampling_model: the model the sampler reads (None: trained.sampling_model(); a guided one: evaluation.guidance)."""
    device = trained.device
    generator = torch.Generator(device=device).manual_seed(seed)
    given = tokens = None
    free = torch.ones(length, dtype=torch.bool)
    if template is not None:
        row_given, row_tokens = conditioning(template, trained.tokenizer, length, trained.max_length)
        free = ~row_given
        given = row_given.expand(num_samples, length).to(device)
        tokens = row_tokens.expand(num_samples, length).to(device)
    with torch.no_grad():
        result = sampler.generate(
            sampling_model or trained.sampling_model(), num_samples, length, generator=generator, given=given,
            tokens=tokens,
            device=device,
        )
    ids = result.tokens.cpu()
    clean = ids.clamp(max=trained.tokenizer.vocab_size - 1)  # a mask left by a sampler reads as end-of-text
    generated = ids[:, free]
    entropies = [samplers.unigram_entropy(row) for row in generated]
    texts = [trained.tokenizer.decode(row) for row in clean.tolist()]
    return Samples(texts, ids, entropies, result.nfe)

def format_samples(samples: Samples, description: str) -> str:
    """The samples, each under a header with its unigram entropy, and a last line with the NFE."""
    lines = []
    for index, (text, entropy) in enumerate(zip(samples.texts, samples.entropies, strict=True)):
        lines.append(f"=== sample {index}: unigram entropy {entropy:.3f} nats ===")
        lines.append(text)
    mean = sum(samples.entropies) / len(samples.entropies)
    lines.append(f"=== {description}: NFE {samples.nfe:g}, mean unigram entropy {mean:.3f} nats ===")
    return "\n".join(lines) + "\n"


@dataclass
class DrawnSamples:
    """Samples drawn for judging. tokens: (N, L) long in [0, V) (a mask a sampler left reads as end-of-text);
    nfe: network evaluations per sequence (samplers.SamplingResult; AR: L); seconds_per_sample: the sampler's
    wall time / N; sampler: what drew them ("ancestral" or "<name>, <steps> steps")."""

    tokens: torch.Tensor
    nfe: float
    seconds_per_sample: float
    sampler: str

def draw_samples(
    model: TrainedModel,
    num_samples: int,
    length: int,
    seed: int = 0,
    sampler: str = "euler",
    options: dict[str, object] | None = None,
    sampling_model: samplers.ConcreteScore | samplers.Denoiser | None = None,
) -> DrawnSamples:
    """`num_samples` samples of `length` tokens from `model`'s EMA weights, timed: ancestral for an AR model,
    else the sampler named `sampler` (resolve_sampler) built with `options` (e.g. {"steps": 16}), reading
    `sampling_model` (None: model.sampling_model(); a guided model: evaluation.guidance.guided_model).

    Raises ValueError (one line) for a length the network does not accept, an unknown sampler or option, and
    sampler options given for an AR model.
    """
    model.check_length(length, "--length")
    device = model.device
    start = time.perf_counter()
    if model.kind == "autoregressive":
        if options:
            raise ValueError(f"an autoregressive model samples ancestrally; it takes no sampler option {options}")
        result = model.generate_ancestral(num_samples, length, torch.Generator(device=device).manual_seed(seed))
        tokens, nfe, label = result.tokens.cpu(), float(result.nfe), "ancestral"
    else:
        built = build_sampler(resolve_sampler(sampler), model.process, dict(options or {}), sampler)
        samples = generate_samples(model, built, num_samples, length, seed, sampling_model=sampling_model)
        tokens = samples.tokens.clamp(max=model.tokenizer.vocab_size - 1)  # a mask left reads as end-of-text
        steps = getattr(built, "steps", None)
        nfe, label = float(samples.nfe), f"{sampler}, {'exact' if steps is None else steps} steps"
    return DrawnSamples(tokens, nfe, (time.perf_counter() - start) / num_samples, label)
