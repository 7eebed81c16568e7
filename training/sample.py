"""`lightning sample`: text from a trained checkpoint, with a chosen sampler, steps and prompt.

    lightning sample --ckpt_path logs/lightning_logs/version_0/checkpoints/last.ckpt \\
        [--sampler euler|tau-leaping|tweedie|first-hitting|package.module.Class] [--sampler_option KEY=VALUE]
        [--steps 128] [--num_samples 4] [--length 128]
        [--seed 0] [--prefix "ROMEO:" | --suffix "..." | --infill "The [MASK] of [MASK]"]
        [--temperature 1.0 --top_k K --top_p P --greedy] [--output FILE] [--config cfg.yaml] [--device cpu]

The module is rebuilt from the checkpoint (training/restore.py) and sampled with its EMA weights. A prompt is
a template: fixed text with [MASK] gaps; `--prefix P` is the template "P[MASK]", `--suffix S` is "[MASK]S",
both "P[MASK]S". The gaps share the positions the fixed text leaves free in `--length` tokens equally (the
first gaps take one more when it does not divide). Fixed positions are never changed by the sampler
(`samplers.Sampler.generate(given=..., tokens=...)`), so a prefix is kept verbatim (with GPT-2's BPE, a space
that ends a piece before a gap is left to the gap's first token: see `template_pieces`).

On an autoregressive checkpoint (configs/ar.yaml) the samples are drawn ancestrally, one token per network
call (samplers.ancestral_sample), with the same --temperature / --top_k / --top_p / --greedy and a --prefix
(encoded as a whole, kept verbatim); --sampler, --steps, --suffix and --infill are diffusion options and are
refused in one line.

Beside each sample the command prints the unigram entropy (nats) of its generated positions
(`samplers.unigram_entropy`; a collapsing model repeats tokens and shows a low entropy) and, at the end, the
number of network calls (NFE).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import samplers
from training.restore import CommandParser, TrainedModel, check_device, check_output, load_trained, write_output
from training.tokenizers import Tokenizer

MASK = "[MASK]"

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


SAMPLERS = sampler_classes()  # the choices at import time (kept for callers of the earlier dict)


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


def parse_sampler_options(items: Sequence[str]) -> dict[str, Any]:
    """{KEY: value} from `KEY=VALUE` items, each VALUE a Python literal (ast.literal_eval)."""
    options: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(f"{SAMPLER_OPTION} {item!r}: write KEY=VALUE, e.g. {SAMPLER_OPTION} steps=64")
        if key in options:
            raise ValueError(f"{SAMPLER_OPTION} {key} is given twice; give each key once")
        try:
            options[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(
                f"{SAMPLER_OPTION} {item!r}: {value!r} is not a Python literal; quote strings "
                f"({key}='text') and write numbers, True/False/None, lists or tuples as in Python"
            ) from None
    return options


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


def prompt_template(prefix: str | None, suffix: str | None, infill: str | None) -> str | None:
    """The template of the prompt options: `infill` itself, or prefix + [MASK] + suffix; None: no prompt."""
    if infill is not None:
        if prefix is not None or suffix is not None:
            raise ValueError("--infill cannot be combined with --prefix/--suffix; put the text in the template")
        if MASK not in infill:
            raise ValueError(f"--infill {infill!r} has no {MASK} gap; mark the text to generate with {MASK}")
        return infill
    if prefix is None and suffix is None:
        return None
    return f"{prefix or ''}{MASK}{suffix or ''}"


def gap_lengths(free: int, gaps: int) -> list[int]:
    """`free` positions shared by `gaps` gaps as equally as possible, the first ones taking the remainder."""
    return [free // gaps + (1 if index < free % gaps else 0) for index in range(gaps)]


def folds_space_into_words(tokenizer: Tokenizer) -> bool:
    """True if `tokenizer` encodes a space and the word after it as one token (GPT-2 BPE: " a" is one id)."""
    return len(tokenizer.encode(" a")) == 1


def template_pieces(template: str, tokenizer: Tokenizer) -> list[list[int]]:
    """The token ids of the text pieces between the [MASK] gaps of `template`, in order.

    With a tokenizer that folds a space into the word after it, a space that ends a piece before a gap is
    left to the gap: "KING: [MASK] Lear" gives "KING:" and " Lear", and the gap's first token (" my") carries
    the space, as in the tokenisation of "KING: my Lear"; encoding "KING: " would fix a lone space token and
    the text would read "KING:  my Lear". Character tokenizers keep every piece verbatim.
    """
    texts = template.split(MASK)
    if folds_space_into_words(tokenizer):
        texts = [text[:-1] if index < len(texts) - 1 and text.endswith(" ") else text
                 for index, text in enumerate(texts)]
    return [tokenizer.encode(text) for text in texts]


def conditioning(
    template: str, tokenizer: Tokenizer, length: int, max_length: int | None = None
) -> tuple[Tensor, Tensor]:
    """(given (length,) bool, tokens (length,) long): the fixed positions of `template` and their token ids.

    Each text piece between [MASK] gaps is encoded (template_pieces) and placed in order; the gaps fill the
    rest. max_length: the longest sequence the network accepts, named in the error when the prompt needs more.
    """
    pieces = template_pieces(template, tokenizer)
    fixed = sum(len(piece) for piece in pieces)
    gaps = len(pieces) - 1
    if fixed + gaps > length:
        needed = fixed + gaps
        if max_length is not None and needed > max_length:
            raise ValueError(
                f"the prompt takes {fixed} tokens and {gaps} gap(s) need at least one each ({needed} in all), more "
                f"than the network's max_length={max_length}; shorten the prompt"
            )
        limit = "" if max_length is None else f" (the network accepts up to {max_length})"
        raise ValueError(
            f"the prompt takes {fixed} tokens and {gaps} gap(s) need at least one each, more than --length "
            f"{length}; raise --length to at least {needed}{limit} or shorten the prompt"
        )
    given = torch.zeros(length, dtype=torch.bool)
    tokens = torch.zeros(length, dtype=torch.long)
    position = 0
    for piece, gap in zip(pieces, [*gap_lengths(length - fixed, gaps), 0], strict=True):
        given[position : position + len(piece)] = True
        tokens[position : position + len(piece)] = torch.tensor(piece, dtype=torch.long)
        position += len(piece) + gap
    return given, tokens


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
) -> Samples:
    """num_samples sequences of `length` tokens from the EMA weights, the prompt `template` held fixed."""
    module = trained.module
    generator = torch.Generator(device=module.device).manual_seed(seed)
    given = tokens = None
    free = torch.ones(length, dtype=torch.bool)
    if template is not None:
        row_given, row_tokens = conditioning(template, trained.tokenizer, length, trained.max_length)
        free = ~row_given
        given = row_given.expand(num_samples, length).to(module.device)
        tokens = row_tokens.expand(num_samples, length).to(module.device)
    with torch.no_grad():
        result = sampler.generate(
            module.sampling_model(), num_samples, length, generator=generator, given=given, tokens=tokens,
            device=module.device,
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


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning sample", description="Write text sampled from a trained checkpoint (EMA weights)."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    parser.add_argument(
        "--sampler",
        help=f"reverse-time sampler (default euler): {', '.join(sorted(sampler_classes()))}, or a dotted class "
        "path (a samplers.Sampler subclass); autoregressive checkpoints sample ancestrally",
    )
    parser.add_argument(
        "--steps", type=int, help="sampler steps (default: 128; first-hitting: one token per call, exact)"
    )
    parser.add_argument(
        SAMPLER_OPTION, action="append", default=[], metavar="KEY=VALUE",
        help="a keyword argument of the sampler's constructor, VALUE a Python literal (repeatable), "
        "e.g. eps=1e-4 or denoise=False",
    )
    parser.add_argument("--num_samples", type=int, default=4, help="number of sequences")
    parser.add_argument("--length", type=int, help="tokens per sequence (default: the training seq_len)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--prefix", help="text the samples start with (kept verbatim)")
    parser.add_argument("--suffix", help="text the samples end with")
    parser.add_argument("--infill", help=f"template with {MASK} gaps to fill, e.g. 'The {MASK} of {MASK}'")
    parser.add_argument("--temperature", type=float, help="destination temperature (default 1)")
    parser.add_argument("--top_k", type=int, help="draw destinations among the k most likely tokens")
    parser.add_argument("--top_p", type=float, help="draw destinations from the nucleus of mass p")
    parser.add_argument("--greedy", action="store_true", default=None, help="take the most likely destination")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser


def run(arguments: argparse.Namespace) -> Samples:
    """The sample command on parsed arguments; writes the samples and returns them."""
    if arguments.num_samples < 1:
        raise ValueError(f"--num_samples must be >= 1, got {arguments.num_samples}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    template = prompt_template(arguments.prefix, arguments.suffix, arguments.infill)
    check_output(arguments.output)
    device = check_device(arguments.device)
    trained = load_trained(arguments.ckpt_path, arguments.config, device)
    if trained.kind == "autoregressive":
        return run_autoregressive(arguments, trained)
    arguments.sampler = arguments.sampler or "euler"
    sampler_class = resolve_sampler(arguments.sampler)
    options = parse_sampler_options(arguments.sampler_option)
    for key in ("steps", "temperature", "top_k", "top_p", "greedy"):
        value = getattr(arguments, key)
        if value is not None:
            if key in options:
                raise ValueError(f"--{key} and {SAMPLER_OPTION} {key}=... are both given; give one")
            options[key] = value
    length = trained.seq_len if arguments.length is None else arguments.length
    trained.check_length(length, "--length")
    sampler = build_sampler(sampler_class, trained.module.process, options, arguments.sampler)
    samples = generate_samples(trained, sampler, arguments.num_samples, length, arguments.seed, template)
    steps = "exact" if getattr(sampler, "steps", None) is None else f"{sampler.steps} steps"
    description = f"{arguments.sampler}, {steps}, {arguments.num_samples} x {length} tokens, seed {arguments.seed}"
    text = format_samples(samples, description)
    write_output(text, arguments.output)
    return samples


def run_autoregressive(arguments: argparse.Namespace, trained: TrainedModel) -> Samples:
    """The sample command on an autoregressive checkpoint: ancestral draws after an optional --prefix."""
    for name, flag in (("sampler", "--sampler"), ("steps", "--steps"), ("suffix", "--suffix"), ("infill", "--infill"),
                       ("sampler_option", SAMPLER_OPTION)):
        if getattr(arguments, name):
            raise ValueError(
                f"{flag} is a diffusion option, but --ckpt_path holds an autoregressive model (it samples left to "
                "right); use --prefix, --temperature, --top_k, --top_p or --greedy"
            )
    length = trained.seq_len if arguments.length is None else arguments.length
    trained.check_length(length, "--length")
    decoding = samplers.Decoding(**{key: getattr(arguments, key) for key in ("temperature", "top_k", "top_p", "greedy")
                                    if getattr(arguments, key) is not None})
    prefix = None
    if arguments.prefix is not None:
        prefix = torch.tensor(trained.tokenizer.encode(arguments.prefix), dtype=torch.long)
        if prefix.numel() > length:
            raise ValueError(
                f"--prefix takes {prefix.numel()} tokens, more than --length {length}; raise --length or shorten it"
            )
    module = trained.module
    generator = torch.Generator(device=module.device).manual_seed(arguments.seed)
    result = module.generate_result(arguments.num_samples, length, generator, prefix, decoding)
    ids = result.tokens.cpu()
    generated = ids[:, 0 if prefix is None else prefix.numel():]
    entropies = [samplers.unigram_entropy(row) if row.numel() else 0.0 for row in generated]
    samples = Samples([trained.tokenizer.decode(row) for row in ids.tolist()], ids, entropies, result.nfe)
    description = f"ancestral, {arguments.num_samples} x {length} tokens, seed {arguments.seed}"
    write_output(format_samples(samples, description), arguments.output)
    return samples


def main(argv: Sequence[str]) -> Samples:
    """Entry point of `lightning sample ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
