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
from evaluation.prompts import conditioning, template_pieces
from evaluation.restore import TrainedModel
from evaluation.windows import writing_plan

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
    so that a per-row cache stays comparable; samplers.SamplingResult); lengths: with a stop token, the tokens
    of each sample up to its first generated stop token (included), or L (None: no stop token asked for);
    how: how the text was drawn (evaluation.windows.WritingPlan.describe), "" when not said."""

    texts: list[str]
    tokens: Tensor
    entropies: list[float]
    nfe: float
    lengths: list[int] | None = None
    how: str = ""

def stop_lengths(tokens: Tensor, start: int, stop_token: int) -> Tensor:
    """(B,) long: the tokens of each row of tokens (B, L) up to its first stop_token at a position >= start
    (included), or L when it has none."""
    hit = tokens[:, start:] == stop_token
    first = start + hit.long().argmax(1) + 1
    return torch.where(hit.any(1), first, torch.full_like(first, tokens.shape[1]))

def finish_samples(trained: TrainedModel, ids: Tensor, start: int | Tensor, nfe: float,
                   lengths: Tensor | None = None, how: str = "") -> Samples:
    """Samples of ids (B, L) (on any device): texts decoded up to each row's length (all of it without lengths),
    entropies over the generated positions (from `start`, an int or a (L,) bool of the generated positions) up to
    it, and the positions after it set to end-of-text; a mask left by a sampler reads as end-of-text."""
    ids = ids.cpu()
    if lengths is not None:  # after its stop token a row reads end-of-text (as samplers.BlockSampler fills it)
        ids = ids.masked_fill(torch.arange(ids.shape[1]) >= lengths.cpu()[:, None], trained.tokenizer.eot_id)
    clean = ids.clamp(max=trained.tokenizer.vocab_size - 1)
    ends = [ids.shape[1]] * ids.shape[0] if lengths is None else [int(end) for end in lengths]
    free = torch.arange(ids.shape[1]) >= start if isinstance(start, int) else start.cpu()
    entropies = [samplers.unigram_entropy(row[: end][free[: end]]) if bool(free[: end].any()) else 0.0
                 for row, end in zip(ids, ends, strict=True)]
    texts = [trained.tokenizer.decode(row[: end]) for row, end in zip(clean.tolist(), ends, strict=True)]
    return Samples(texts, ids, entropies, nfe, None if lengths is None else ends, how)

def prompt_ids(template: str | None, trained: TrainedModel, length: int) -> Tensor | None:
    """The token ids (P,) of a prefix-only template "P[MASK]" (encoded as the whole-sequence path encodes it),
    None without a template. A text drawn left to right takes a prefix only; the prompt must fit in `length`
    and in the seq_len positions the model reads at once."""
    if template is None:
        return None
    pieces = template_pieces(template, trained.tokenizer)
    if len(pieces) != 2 or pieces[1]:
        raise ValueError(
            "--suffix and --infill fix text after the generated part, but this text is drawn left to right (a block "
            f"model, or --length past the trained seq_len={trained.seq_len}); use --prefix only"
        )
    ids = torch.tensor(pieces[0], dtype=torch.long)
    if ids.numel() > length:
        raise ValueError(f"--prefix takes {ids.numel()} tokens, more than --length {length}; raise --length or "
                         "shorten it")
    if ids.numel() > trained.seq_len:
        raise ValueError(f"--prefix takes {ids.numel()} tokens, more than the seq_len={trained.seq_len} positions the "
                         "model reads at once (its context); shorten it")
    return ids

def generate_samples(
    trained: TrainedModel,
    sampler: samplers.Sampler,
    num_samples: int,
    length: int,
    seed: int,
    template: str | None = None,
    *,
    stop: bool = False,
    stride: int | None = None,
    cache: bool = True,
    sampling_model: samplers.ConcreteScore | samplers.Denoiser | None = None,
) -> Samples:
    """num_samples sequences of `length` tokens from the EMA weights, the prompt `template` held fixed, drawn as
    evaluation.windows.writing_plan says (whole, block by block, or in semi-autoregressive windows; `sampler`
    draws each sequence, block or window). stop: end each sample at its first generated end-of-text token
    (Samples.lengths; a text drawn left to right stops drawing it). stride, cache: writing_plan's.
    sampling_model: the model the sampler reads (None: trained.sampling_model(); a guided one: evaluation.guidance)."""
    plan = writing_plan(trained, sampler, length, stride, cache, sampling_model)
    device = trained.device
    generator = torch.Generator(device=device).manual_seed(seed)
    stop_token = trained.tokenizer.eot_id if stop else None
    if plan.continues:
        prefix = prompt_ids(template, trained, length)
        with torch.no_grad():
            result = plan.sampler.generate(plan.model, num_samples, length, prefix=prefix, stop_token=stop_token,
                                           generator=generator, device=device)
        start = 0 if prefix is None else prefix.numel()
        return finish_samples(trained, result.tokens, start, result.nfe, result.lengths if stop else None,
                              plan.describe())
    given = tokens = None
    free = torch.ones(length, dtype=torch.bool)
    if template is not None:
        row_given, row_tokens = conditioning(template, trained.tokenizer, length, trained.max_length)
        free = ~row_given
        given = row_given.expand(num_samples, length).to(device)
        tokens = row_tokens.expand(num_samples, length).to(device)
    with torch.no_grad():
        result = sampler.generate(plan.model, num_samples, length, generator=generator, given=given, tokens=tokens,
                                  device=device)
    start = int(free.long().argmax()) if bool(free.any()) else length  # the first generated position
    lengths = stop_lengths(result.tokens.cpu(), start, stop_token) if stop else None
    return finish_samples(trained, result.tokens, free, result.nfe, lengths, plan.describe())

def format_samples(samples: Samples, description: str) -> str:
    """The samples, each under a header with its unigram entropy (and its length with a stop token), and a last
    line with the NFE."""
    lines = []
    for index, (text, entropy) in enumerate(zip(samples.texts, samples.entropies, strict=True)):
        size = "" if samples.lengths is None else f"{samples.lengths[index]} tokens, "
        lines.append(f"=== sample {index}: {size}unigram entropy {entropy:.3f} nats ===")
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
