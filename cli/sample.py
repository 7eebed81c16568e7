"""`lightning sample`: text from a trained checkpoint, with a chosen sampler, steps and prompt.

    lightning sample --ckpt_path logs/lightning_logs/version_0/checkpoints/last.ckpt \\
        [--sampler euler|tau-leaping|tweedie|first-hitting|package.module.Class] [--sampler_option KEY=VALUE]
        [--steps 128] [--num_samples 4] [--length 128] [--stop] [--stride S]
        [--seed 0] [--prefix "ROMEO:" | --suffix "..." | --infill "The [MASK] of [MASK]"]
        [--temperature 1.0 --top_k K --top_p P --greedy] [--output FILE] [--config cfg.yaml] [--device cpu]
        [--label NAME [--guidance GAMMA] [--classifier classifier.ckpt]]

The model is restored from the checkpoint (evaluation.load_trained) and sampled with its EMA weights
(evaluation.generation). A prompt is a template: fixed text with [MASK] gaps (evaluation.prompts); `--prefix P`
is the template "P[MASK]", `--suffix S` is "[MASK]S", both "P[MASK]S"; fixed positions are kept verbatim.

Any --length: a text longer than the seq_len the model was trained on is written as evaluation/windows.py
says: a block diffusion model (configs/bd3lm.yaml) always block after block (the sampler inside each block, a
key/value cache over the clean blocks, the context sliding at seq_len), a plain model on the absorbing chain in
semi-autoregressive windows of seq_len tokens that add --stride new ones each (default seq_len // 2), the AR
model with a context sliding at seq_len; a plain model on another chain is refused past seq_len, in one line
that names the models that can. A text drawn left to right takes --prefix only (at most seq_len tokens, the
context), not --suffix or --infill. `--stop` ends each sample at its first generated end-of-text token and
prints its length.

On an autoregressive checkpoint (configs/ar.yaml) the samples are drawn ancestrally, one token per network
call (samplers.ancestral_sample), with the same --temperature / --top_k / --top_p / --greedy and a --prefix
(encoded as a whole, kept verbatim); --sampler, --steps, --stride, --suffix and --infill are diffusion options
and are refused in one line.

Guided sampling (evaluation.guidance): `--label NAME --guidance GAMMA` draws class NAME of a checkpoint trained on
labelled data (configs/sedd-genre.yaml, configs/radd-genre.yaml) with classifier-free guidance of weight GAMMA
(default 1, the conditional model; 0 the unconditional one; > 1 sharper), with every sampler; `--classifier PATH`
(a checkpoint of configs/classifier-genre.yaml) guides the model's unconditional score with that classifier of
noisy sequences instead (predictor guidance), for unconditional checkpoints too. The label and weight are written
in the footer. An unknown label (the known ones are listed), a label for an unconditional checkpoint without a
classifier, a negative or non-finite weight and guidance options for an autoregressive checkpoint are refused in
one line, before anything is written.

Beside each sample the command prints the unigram entropy (nats) of its generated positions
(`samplers.unigram_entropy`; a collapsing model repeats tokens and shows a low entropy) and, at the end, the
number of network calls (NFE).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from typing import Any

import torch

import samplers
from cli.arguments import CommandParser, check_device, check_output, write_output
from evaluation.generation import (
    SAMPLER_OPTION,
    Samples,
    build_sampler,
    finish_samples,
    format_samples,
    generate_samples,
    resolve_sampler,
    sampler_classes,
    stop_lengths,
)
from evaluation.guidance import Guidance, check_guidance, guided_model, resolve_label
from evaluation.prompts import MASK, prompt_template
from evaluation.restore import TrainedModel, load_trained


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
    parser.add_argument("--length", type=int, help="tokens per sequence (default: the training seq_len); past it, "
                        "block by block, in windows or with a sliding context (see the description)")
    parser.add_argument("--stop", action="store_true", help="end each sample at its first generated end-of-text "
                        "token and print its length")
    parser.add_argument("--stride", type=int, help="past seq_len, a plain masked model's windows add this many new "
                        "tokens each (default seq_len // 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--prefix", help="text the samples start with (kept verbatim)")
    parser.add_argument("--suffix", help="text the samples end with")
    parser.add_argument("--infill", help=f"template with {MASK} gaps to fill, e.g. 'The {MASK} of {MASK}'")
    parser.add_argument("--temperature", type=float, help="destination temperature (default 1)")
    parser.add_argument("--top_k", type=int, help="draw destinations among the k most likely tokens")
    parser.add_argument("--top_p", type=float, help="draw destinations from the nucleus of mass p")
    parser.add_argument("--greedy", action="store_true", default=None, help="take the most likely destination")
    parser.add_argument("--label", help="draw this class (a checkpoint trained with data.labels, or --classifier's)")
    parser.add_argument("--guidance", type=float, help="guidance weight gamma >= 0 with --label (default 1: the "
                        "conditional model; 0: unconditional; > 1: sharper towards the class)")
    parser.add_argument("--classifier", help="with --label: a classifier of noisy sequences (configs/classifier-genre"
                        ".yaml) that guides the model's unconditional score (predictor guidance)")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser

def run(arguments: argparse.Namespace) -> Samples:
    """The sample command on parsed arguments; writes the samples and returns them."""
    if arguments.num_samples < 1:
        raise ValueError(f"--num_samples must be >= 1, got {arguments.num_samples}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    if arguments.length is not None and arguments.length < 1:
        raise ValueError(f"--length must be a positive integer (tokens per sample), got {arguments.length}")
    template = prompt_template(arguments.prefix, arguments.suffix, arguments.infill)
    check_guidance_options(arguments)
    check_output(arguments.output)
    device = check_device(arguments.device)
    trained = load_trained(arguments.ckpt_path, arguments.config, device)
    if trained.kind == "classifier":
        raise ValueError("--ckpt_path holds a classifier of noisy sequences; give a diffusion checkpoint as "
                         "--ckpt_path and the classifier as --classifier")
    if trained.kind == "autoregressive":
        return run_autoregressive(arguments, trained)
    guidance, model = guidance_of(arguments, trained)
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
    sampler = build_sampler(sampler_class, trained.process, options, arguments.sampler)
    samples = generate_samples(trained, sampler, arguments.num_samples, length, arguments.seed, template,
                               stop=arguments.stop, stride=arguments.stride, sampling_model=model)
    steps = "exact" if getattr(sampler, "steps", None) is None else f"{sampler.steps} steps"
    description = (f"{arguments.sampler}, {steps}, {samples.how}, {arguments.num_samples} x {length} tokens, "
                   f"seed {arguments.seed}")
    if guidance is not None:
        description = f"{description}, {guidance.describe()}"
    text = format_samples(samples, description)
    write_output(text, arguments.output)
    return samples

def check_guidance_options(arguments: argparse.Namespace) -> None:
    """Raise ValueError (one line) for --guidance or --classifier without --label, and a bad --guidance."""
    if arguments.label is None:
        for flag in ("guidance", "classifier"):
            if getattr(arguments, flag) is not None:
                raise ValueError(f"--{flag} steers the samples towards a class; give the class with --label NAME")
    if arguments.guidance is not None:
        check_guidance(arguments.guidance)


def guidance_of(arguments: argparse.Namespace, trained: TrainedModel) -> tuple[Guidance | None, Any]:
    """The guidance the options ask for and the guided model (evaluation.guidance.guided_model); (None, None)
    without --label."""
    if arguments.label is None:
        return None, None
    gamma = 1.0 if arguments.guidance is None else arguments.guidance
    classifier = None
    if arguments.classifier is not None:
        classifier = load_trained(arguments.classifier, None, trained.device)
        classifier.require_kind("classifier", "--classifier")
        label = resolve_label(arguments.label, classifier.class_names, f"--classifier {arguments.classifier}")
    else:
        label = resolve_label(arguments.label, trained.class_names, f"--ckpt_path {arguments.ckpt_path}")
    model = guided_model(trained, label, gamma, classifier)
    return Guidance(label, arguments.label, gamma, arguments.classifier), model


def run_autoregressive(arguments: argparse.Namespace, trained: TrainedModel) -> Samples:
    """The sample command on an autoregressive checkpoint: ancestral draws after an optional --prefix."""
    for name, flag in (("label", "--label"), ("guidance", "--guidance"), ("classifier", "--classifier")):
        if getattr(arguments, name) is not None:
            raise ValueError(f"{flag}: guided sampling is for diffusion checkpoints, but --ckpt_path holds an "
                             "autoregressive model; sample it without --label, --guidance and --classifier")
    for name, flag in (("sampler", "--sampler"), ("steps", "--steps"), ("suffix", "--suffix"), ("infill", "--infill"),
                       ("sampler_option", SAMPLER_OPTION), ("stride", "--stride")):
        if getattr(arguments, name):
            raise ValueError(
                f"{flag} is a diffusion option, but --ckpt_path holds an autoregressive model (it samples left to "
                "right); use --prefix, --temperature, --top_k, --top_p or --greedy"
            )
    length = trained.seq_len if arguments.length is None else arguments.length
    decoding = samplers.Decoding(**{key: getattr(arguments, key) for key in ("temperature", "top_k", "top_p", "greedy")
                                    if getattr(arguments, key) is not None})
    prefix = None
    if arguments.prefix is not None:
        prefix = torch.tensor(trained.tokenizer.encode(arguments.prefix), dtype=torch.long)
        if prefix.numel() > length:
            raise ValueError(
                f"--prefix takes {prefix.numel()} tokens, more than --length {length}; raise --length or shorten it"
            )
        if prefix.numel() > trained.seq_len:
            raise ValueError(f"--prefix takes {prefix.numel()} tokens, more than the seq_len={trained.seq_len} "
                             "positions the model reads at once (its context); shorten it")
    generator = torch.Generator(device=trained.device).manual_seed(arguments.seed)
    result = trained.generate_ancestral(arguments.num_samples, length, generator, prefix, decoding)
    start = 0 if prefix is None else prefix.numel()
    lengths = stop_lengths(result.tokens.cpu(), start, trained.tokenizer.eot_id) if arguments.stop else None
    how = "sliding context" if length > trained.seq_len else "whole sequence"
    samples = finish_samples(trained, result.tokens, start, result.nfe, lengths, how)
    description = f"ancestral, {how}, {arguments.num_samples} x {length} tokens, seed {arguments.seed}"
    write_output(format_samples(samples, description), arguments.output)
    return samples

def main(argv: Sequence[str]) -> Samples:
    """Entry point of `lightning sample ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
