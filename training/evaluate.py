"""`lightning evaluate`: the negative-ELBO perplexity bound of a checkpoint on a text file, with its error.

    lightning evaluate --ckpt_path .../last.ckpt --text some.txt [--time_samples 8] [--seq_len 128]
        [--batch_size 8] [--seed 0] [--json] [--output FILE] [--config cfg.yaml] [--device cpu]

The text is tokenised as the training data is (documents split at form-feed lines, each followed by the
end-of-text id) and cut into consecutive sequences of seq_len tokens (default: the training seq_len), the
last one shorter when the count does not divide. For each sequence i of L_i tokens, K draws give the
unbiased estimate n_i = (1/K) sum_k loss_k of its negative ELBO in nats, an upper bound on -log p(x_i). The
draws are the module's validation estimator (`DiffusionModule.negative_elbo_draws`): on the absorbing chain
(`model.val_estimator` auto or masked_count) K masked counts stratified over 1..L with importance-weighted
times (losses.MaskedCountEstimator; bounded terms), otherwise K times stratified through the loss's time law
(t_k from (u + k) / K, one shared uniform u; training/elbo.py).
The bound per token is the ratio of sums

    R = sum_i n_i / sum_i L_i                                     (nats/token; bits = R / ln 2; ppl <= e^R)

and its standard error is the delta-method SE of a ratio estimator over the N sequences,

    SE(R) = sqrt( sum_i (n_i - R L_i)^2 / (N (N - 1)) ) / mean_i(L_i),

which is the SE of the mean of the n_i / L when every sequence has L tokens. It counts the Monte-Carlo noise
of the time and noise draws and the spread between sequences (for a fixed text it over-covers the Monte-Carlo
error alone). By the delta method again, SE(bits) = SE(R) / ln 2 (exact: linear) and
SE(perplexity) = e^R SE(R) (first order).

Also reported: the unigram entropy of the text, over all its tokens (the cross-entropy of the best unigram
model of this text, a reference point), and the mean per-sequence unigram entropy (comparable with
`lightning sample`'s at the same length).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

import samplers
from training.data_corpus import TextCorpus
from training.elbo import RatioEstimate, ratio_estimate  # noqa: F401 (RatioEstimate: public name kept here)
from training.restore import CommandParser, TrainedModel, check_output, load_trained, write_output


def text_tokens(path: str, trained: TrainedModel) -> Tensor:
    """(T,) long: the documents of the file at `path`, each encoded and followed by the end-of-text id."""
    corpus = TextCorpus(path, argument="text")
    ids: list[int] = []
    for document in corpus.documents():
        ids.extend(trained.tokenizer.encode(document))
        ids.append(trained.tokenizer.eot_id)
    if not ids:
        raise ValueError(f"text: {path!r} holds no text; give a file that contains text")
    return torch.tensor(ids, dtype=torch.long)


def corpus_entropy(tokens: Tensor) -> float:
    """Entropy (nats) of the token histogram of all of `tokens` (T,): -sum_v f_v log f_v."""
    frequencies = torch.bincount(tokens).double()
    frequencies = frequencies[frequencies > 0] / tokens.numel()
    return float(-(frequencies * frequencies.log()).sum())


@dataclass
class Evaluation:
    """The result of `evaluate`, as printed and written to JSON. SEs are None with a single sequence."""

    checkpoint: str
    text: str
    tokens: int
    sequences: int
    seq_len: int
    time_samples: int
    seed: int
    nats_per_token: float
    nats_per_token_se: float | None
    bits_per_token: float
    bits_per_token_se: float | None
    perplexity_bound: float
    perplexity_bound_se: float | None
    unigram_entropy_nats: float
    mean_sequence_unigram_entropy_nats: float
    standard_error: str = (
        "one Monte-Carlo standard error: n_i = mean over the K stratified draws of sequence i; "
        "SE of R = sum n_i / sum L_i by the delta method over sequences; bits SE = SE / ln 2; "
        "perplexity SE = exp(R) SE (delta method)"
    )


def sequence_nats(trained: TrainedModel, blocks: Tensor, time_samples: int, seed: int, batch_size: int) -> Tensor:
    """(N,) per-sequence negative ELBO estimates (nats), each the mean over K stratified draws."""
    module = trained.module
    rows = []
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch_size):
            x0 = blocks[start : start + batch_size].to(module.device)
            nats = module.negative_elbo_draws(x0, time_samples, seed)
            rows.append(nats.double().mean(dim=1).cpu())
    return torch.cat(rows)


def evaluate(
    trained: TrainedModel, path: str, time_samples: int, seq_len: int, seed: int, batch_size: int, checkpoint: str
) -> Evaluation:
    """The negative-ELBO bound of the text at `path` under `trained`'s EMA weights (see the module docstring)."""
    tokens = text_tokens(path, trained)
    full = tokens.numel() // seq_len
    groups = [(tokens[: full * seq_len].view(full, seq_len), seq_len)] if full else []
    if tokens.numel() % seq_len:
        rest = tokens[full * seq_len :]
        groups.append((rest[None], rest.numel()))
    nats = torch.cat([sequence_nats(trained, blocks, time_samples, seed, batch_size) for blocks, _ in groups])
    lengths = torch.cat([torch.full((blocks.shape[0],), float(length)) for blocks, length in groups])
    estimate = ratio_estimate(nats, lengths)
    se = estimate.standard_error
    ln2 = math.log(2.0)
    return Evaluation(
        checkpoint=checkpoint,
        text=path,
        tokens=tokens.numel(),
        sequences=nats.numel(),
        seq_len=seq_len,
        time_samples=time_samples,
        seed=seed,
        nats_per_token=estimate.value,
        nats_per_token_se=se,
        bits_per_token=estimate.value / ln2,
        bits_per_token_se=None if se is None else se / ln2,
        perplexity_bound=math.exp(estimate.value),
        perplexity_bound_se=None if se is None else math.exp(estimate.value) * se,
        unigram_entropy_nats=corpus_entropy(tokens),
        mean_sequence_unigram_entropy_nats=sum(samplers.unigram_entropy(blocks) * blocks.shape[0]
                                               for blocks, _ in groups) / nats.numel(),
    )


def format_evaluation(result: Evaluation) -> str:
    """A human-readable report of `result`."""

    def pm(value: float, se: float | None, digits: int) -> str:
        if se is None:
            return f"{value:.{digits}f} (SE needs >= 2 sequences)"
        return f"{value:.{digits}f} +- {se:.{digits}f}"

    return "\n".join([
        f"checkpoint: {result.checkpoint}",
        f"text: {result.text}: {result.tokens} tokens in {result.sequences} sequence(s) of <= {result.seq_len}",
        f"draws per sequence: {result.time_samples} (stratified), seed {result.seed}",
        f"negative ELBO:    {pm(result.nats_per_token, result.nats_per_token_se, 4)} nats/token",
        f"                  {pm(result.bits_per_token, result.bits_per_token_se, 4)} bits/token (nats / ln 2)",
        f"perplexity bound: {pm(result.perplexity_bound, result.perplexity_bound_se, 3)} (exp of nats/token)",
        f"+- is {result.standard_error}",
        f"unigram entropy of the text: {result.unigram_entropy_nats:.4f} nats/token "
        f"({result.unigram_entropy_nats / math.log(2.0):.4f} bits); mean per sequence "
        f"{result.mean_sequence_unigram_entropy_nats:.4f} nats",
    ]) + "\n"


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning evaluate", description="Negative-ELBO perplexity bound of a checkpoint on a text file."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning fit`")
    parser.add_argument("--text", "--text_path", dest="text", required=True, help="text file (or directory of .txt)")
    parser.add_argument("--time_samples", type=int, default=8, help="K stratified draws (counts or times) per sequence")
    parser.add_argument("--seq_len", type=int, help="tokens per sequence (default: the training seq_len)")
    parser.add_argument("--batch_size", type=int, default=8, help="sequences per network call (times K rows)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the time and noise draws")
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser


def run(arguments: argparse.Namespace) -> Evaluation:
    """The evaluate command on parsed arguments; writes the report and returns it."""
    for name in ("time_samples", "batch_size"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    TextCorpus(arguments.text, argument="text")  # a missing file fails before the checkpoint is read
    check_output(arguments.output)
    trained = load_trained(arguments.ckpt_path, arguments.config, arguments.device)
    seq_len = trained.seq_len if arguments.seq_len is None else arguments.seq_len
    trained.check_length(seq_len, "--seq_len")
    result = evaluate(
        trained, arguments.text, arguments.time_samples, seq_len, arguments.seed, arguments.batch_size,
        arguments.ckpt_path,
    )
    text = json.dumps(asdict(result), indent=2) + "\n" if arguments.json else format_evaluation(result)
    write_output(text, arguments.output)
    return result


def main(argv: Sequence[str]) -> Evaluation:
    """Entry point of `lightning evaluate ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
