"""`lightning sample`: text from a trained checkpoint, with a chosen sampler, steps and prompt.

    lightning sample --ckpt_path logs/lightning_logs/version_0/checkpoints/last.ckpt \\
        [--sampler euler|tau-leaping|tweedie|first-hitting] [--steps 128] [--num_samples 4] [--length 128]
        [--seed 0] [--prefix "ROMEO:" | --suffix "..." | --infill "The [MASK] of [MASK]"]
        [--temperature 1.0 --top_k K --top_p P --greedy] [--output FILE] [--config cfg.yaml] [--device cpu]

The module is rebuilt from the checkpoint (training/restore.py) and sampled with its EMA weights. A prompt is
a template: fixed text with [MASK] gaps; `--prefix P` is the template "P[MASK]", `--suffix S` is "[MASK]S",
both "P[MASK]S". The gaps share the positions the fixed text leaves free in `--length` tokens equally (the
first gaps take one more when it does not divide). Fixed positions are never changed by the sampler
(`samplers.Sampler.generate(given=..., tokens=...)`), so a prefix is kept verbatim.

Beside each sample the command prints the unigram entropy (nats) of its generated positions
(`samplers.unigram_entropy`; a collapsing model repeats tokens and shows a low entropy) and, at the end, the
number of network calls (NFE).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

import samplers
from training.restore import CommandParser, TrainedModel, check_output, load_trained, write_output
from training.tokenizers import Tokenizer

MASK = "[MASK]"

# The --sampler choices: the command-line names of the samplers package's classes.
SAMPLERS: dict[str, type[samplers.Sampler]] = {
    "euler": samplers.EulerSampler,
    "tau-leaping": samplers.TauLeapingSampler,
    "tweedie": samplers.TweedieSampler,
    "first-hitting": samplers.FirstHittingSampler,
}


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


def conditioning(template: str, tokenizer: Tokenizer, length: int) -> tuple[Tensor, Tensor]:
    """(given (length,) bool, tokens (length,) long): the fixed positions of `template` and their token ids.

    Each text piece between [MASK] gaps is encoded separately and placed in order; the gaps fill the rest.
    """
    pieces = [tokenizer.encode(piece) for piece in template.split(MASK)]
    fixed = sum(len(piece) for piece in pieces)
    gaps = len(pieces) - 1
    if fixed + gaps > length:
        raise ValueError(
            f"the prompt takes {fixed} tokens and {gaps} gap(s) need at least one each, more than --length "
            f"{length}; raise --length to at least {fixed + gaps} or shorten the prompt"
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
    generated (non-prompt) positions; nfe: network calls made."""

    texts: list[str]
    tokens: Tensor
    entropies: list[float]
    nfe: int


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
        row_given, row_tokens = conditioning(template, trained.tokenizer, length)
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
    lines.append(f"=== {description}: NFE {samples.nfe}, mean unigram entropy {mean:.3f} nats ===")
    return "\n".join(lines) + "\n"


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning sample", description="Write text sampled from a trained checkpoint (EMA weights)."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="euler", help="reverse-time sampler")
    parser.add_argument(
        "--steps", type=int, help="sampler steps (default: 128; first-hitting: one token per call, exact)"
    )
    parser.add_argument("--num_samples", type=int, default=4, help="number of sequences")
    parser.add_argument("--length", type=int, help="tokens per sequence (default: the training seq_len)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--prefix", help="text the samples start with (kept verbatim)")
    parser.add_argument("--suffix", help="text the samples end with")
    parser.add_argument("--infill", help=f"template with {MASK} gaps to fill, e.g. 'The {MASK} of {MASK}'")
    parser.add_argument("--temperature", type=float, default=1.0, help="destination temperature")
    parser.add_argument("--top_k", type=int, help="draw destinations among the k most likely tokens")
    parser.add_argument("--top_p", type=float, help="draw destinations from the nucleus of mass p")
    parser.add_argument("--greedy", action="store_true", help="take the most likely destination")
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
    trained = load_trained(arguments.ckpt_path, arguments.config, arguments.device)
    length = trained.seq_len if arguments.length is None else arguments.length
    trained.check_length(length, "--length")
    options = {"temperature": arguments.temperature, "top_k": arguments.top_k, "top_p": arguments.top_p,
               "greedy": arguments.greedy}
    if arguments.steps is not None:
        options["steps"] = arguments.steps
    sampler = SAMPLERS[arguments.sampler](trained.module.process, **options)
    samples = generate_samples(trained, sampler, arguments.num_samples, length, arguments.seed, template)
    steps = "exact" if getattr(sampler, "steps", None) is None else f"{sampler.steps} steps"
    description = f"{arguments.sampler}, {steps}, {arguments.num_samples} x {length} tokens, seed {arguments.seed}"
    text = format_samples(samples, description)
    write_output(text, arguments.output)
    return samples


def main(argv: Sequence[str]) -> Samples:
    """Entry point of `lightning sample ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
