"""The negative-ELBO perplexity bound of a model on a text, with its standard error (`lightning evaluate`).

On an autoregressive checkpoint (configs/ar.yaml) n_i is the exact -log p_theta(x_i) (no time samples; the
standard error below is then the spread between sequences only). On a diffusion checkpoint n_i includes the
t = 1 prior term KL(q(x_1 | x_i) || pi^L) (losses.PriorKL, forward prior), so that R is a true upper bound;
its size is reported beside it (`prior_nats_per_token`; D3PM's loss holds it already).

`--order` (absorbing chain: RADD, or SEDD's DiT through losses.denoiser_from_score_network at the fixed total
noise `--score_total`) also reports the exact fixed-order likelihood of losses.any_order_log_likelihood
beside the bound: left to right, or the mean over K = `--orders` random orders (a fresh permutation per
sequence and order, seeded by --seed) with the standard error of that mean over the K orders. It costs L
network calls per sequence and order.

The text is tokenised as the training data is (documents split at form-feed lines, each followed by the
end-of-text id) and cut into consecutive sequences of seq_len tokens (default: the training seq_len), the
last one shorter when the count does not divide. A block diffusion model (models.BlockDenoiser) scores whole
blocks: seq_len must be a multiple of its block size, and the last tokens of the text that do not fill a block
are left out (`unscored_tokens`); its bound is the block bound of losses.BlockDiffusionLoss.

For each sequence i of L_i tokens, K draws give the unbiased estimate n_i = (1/K) sum_k loss_k of its negative
ELBO in nats, an upper bound on -log p(x_i). The draws are the model's validation estimator
(`TrainedModel.negative_elbo_draws`): on the absorbing chain (`model.val_estimator` auto or masked_count) K
masked counts stratified over 1..L with importance-weighted times (losses.MaskedCountEstimator; bounded terms),
otherwise K times stratified through the loss's time law (t_k from (u + k) / K, one shared uniform u;
evaluation/bounds.py).
The bound per token is the ratio of sums

    R = sum_i n_i / sum_i L_i                                     (nats/token; bits = R / ln 2; ppl <= e^R)

and its standard error is the delta-method SE of a ratio estimator over the N sequences,

    SE(R) = sqrt( sum_i (n_i - R L_i)^2 / (N (N - 1)) ) / mean_i(L_i),

which is the SE of the mean of the n_i / L when every sequence has L tokens. It counts the Monte-Carlo noise
of the time and noise draws and the spread between sequences (for a fixed text it over-covers the Monte-Carlo
error alone). By the delta method again, SE(bits) = SE(R) / ln 2 (exact: linear) and
SE(perplexity) = e^R SE(R) (first order).

Also reported: the cross-entropy on this text of the unigram model of the blocks the model was trained on (the
comparable baseline: a model that has learnt anything beats it; known when the checkpoint stores its data), the
text's own unigram entropy over all its tokens (a property of the text: the cross-entropy of the best unigram
model fitted to this very text, which no model trained elsewhere can be expected to reach), and the mean
per-sequence unigram entropy (comparable with `lightning sample`'s at the same length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import losses
import samplers
from data import TextCorpus, unigram_entropy_of
from data.tokens import document_ids
from evaluation.bounds import ratio_estimate
from evaluation.restore import TrainedModel
from evaluation.training_data import training_unigram


def text_tokens(path: str, trained: TrainedModel) -> Tensor:
    """(T,) long: the documents of the file at `path`, each encoded and followed by the end-of-text id."""
    ids = [token for document in document_ids(TextCorpus(path, argument="text"), trained.tokenizer)
           for token in document]
    if not ids:
        raise ValueError(f"text: {path!r} holds no text; give a file that contains text")
    return torch.tensor(ids, dtype=torch.long)

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
    training_unigram_nats_per_token: float | None = None
    unscored_tokens: int = 0
    kind: str = "diffusion"
    prior_nats_per_token: float = 0.0
    order: str | None = None
    orders: int | None = None
    order_nats_per_token: float | None = None
    order_nats_per_token_se: float | None = None
    order_bits_per_token: float | None = None
    order_bits_per_token_se: float | None = None
    score_total: float | None = None
    standard_error: str = (
        "one Monte-Carlo standard error: n_i = mean over the K stratified draws of sequence i; "
        "SE of R = sum n_i / sum L_i by the delta method over sequences; bits SE = SE / ln 2; "
        "perplexity SE = exp(R) SE (delta method)"
    )

def sequence_nats(trained: TrainedModel, blocks: Tensor, time_samples: int, seed: int, batch_size: int) -> Tensor:
    """(N,) per-sequence nats: AR, exact -log p(x); diffusion, the negative ELBO estimate (mean over K
    stratified draws, the module's validation estimator) plus the prior term."""
    rows = []
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch_size):
            x0 = blocks[start : start + batch_size].to(trained.device)
            if trained.kind == "autoregressive":
                rows.append(trained.sequence_nats(x0).cpu())
                continue
            nats = trained.negative_elbo_draws(x0, time_samples, seed).double().mean(dim=1) + trained.prior_nats(x0)
            rows.append(nats.cpu())
    return torch.cat(rows)

def total_prior_nats(trained: TrainedModel, blocks: Tensor) -> float:
    """The prior term summed over `blocks` (0 for an autoregressive model)."""
    if trained.kind == "autoregressive":
        return 0.0
    return float(trained.prior_nats(blocks.to(trained.device)).sum())

def order_denoiser(trained: TrainedModel, score_total: float) -> losses.any_order.Denoiser:
    """The clean-token denoiser of a diffusion checkpoint on the absorbing chain (one-line errors otherwise)."""
    trained.require_kind("diffusion", "--order")
    if trained.block_size is not None:
        raise ValueError(
            "--order reads a whole-sequence denoiser in one order, but this is a block diffusion model (its "
            "likelihood factorises over blocks); evaluate it without --order"
        )
    if not trained.process.rate_matrix.score_factorises:
        raise ValueError(
            f"--order needs the absorbing chain (ctmc.Absorbing), the checkpoint's chain is "
            f"{type(trained.process.rate_matrix).__name__}; evaluate without --order"
        )
    network = trained.network
    if trained.loss.output_kind == "log_probs":  # a RADD denoiser: time-independent log-probabilities
        def denoiser(x: Tensor) -> Tensor:
            return network(x, None)
        return denoiser
    if trained.loss.output_kind == "log_score":
        return losses.denoiser_from_score_network(network, score_total)
    raise ValueError(f"--order needs a RADD denoiser or a concrete-score network, got {trained.loss.output_kind}")

def fixed_order_nats(
    trained: TrainedModel, blocks: Tensor, order: str, orders: int, seed: int, batch_size: int, score_total: float
) -> Tensor:
    """(K, N) -log p^sigma(x_i) for K orders (left to right: K = 1), from losses.any_order_log_likelihood."""
    denoiser = order_denoiser(trained, score_total)
    device = trained.device
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(1 if order == "left-to-right" else orders):
        nats = []
        for start in range(0, blocks.shape[0], batch_size):
            x0 = blocks[start : start + batch_size].to(device)
            permutation = None
            if order == "random":
                permutation = torch.rand(x0.shape, generator=generator).argsort(-1).to(device)
            nats.append(-losses.any_order_log_likelihood(denoiser, x0, permutation,
                                                         vocab_size=trained.vocab_size).cpu())
        rows.append(torch.cat(nats))
    return torch.stack(rows)

def evaluate(
    trained: TrainedModel, path: str, time_samples: int, seq_len: int, seed: int, batch_size: int, checkpoint: str,
    order: str | None = None, orders: int = 1, score_total: float = 1.0,
) -> Evaluation:
    """The negative-ELBO bound (AR: the exact NLL) of the text at `path` under `trained`'s EMA weights, and
    with `order` the fixed-order likelihood beside it (see the module docstring)."""
    text = text_tokens(path, trained)
    block = trained.block_size or 1  # a block model scores whole blocks only
    if seq_len % block:
        raise ValueError(f"--seq_len {seq_len} is not a multiple of the model's block_size={block}; use a multiple "
                         f"of {block}")
    tokens = text[: text.numel() // block * block]  # the scored tokens: all but a last partial block
    full = tokens.numel() // seq_len
    groups = [(tokens[: full * seq_len].view(full, seq_len), seq_len)] if full else []
    if tokens.numel() % seq_len:
        rest = tokens[full * seq_len :]
        groups.append((rest[None], rest.numel()))
    if not groups:
        raise ValueError(f"text: {path!r} holds {text.numel()} tokens, less than one block of {block}; give more text")
    nats = torch.cat([sequence_nats(trained, blocks, time_samples, seed, batch_size) for blocks, _ in groups])
    lengths = torch.cat([torch.full((blocks.shape[0],), float(length)) for blocks, length in groups])
    estimate = ratio_estimate(nats, lengths)
    se = estimate.standard_error
    unigram = training_unigram(trained)
    ln2 = math.log(2.0)
    total_tokens = float(lengths.sum())
    fixed: dict[str, float | int | str | None] = {}
    if order is not None:
        per_order = torch.cat([fixed_order_nats(trained, blocks, order, orders, seed, batch_size, score_total)
                               for blocks, _ in groups], dim=1).sum(1) / total_tokens  # (K,) nats/token
        order_se = float(per_order.std(correction=1)) / math.sqrt(per_order.numel()) if per_order.numel() > 1 else None
        fixed = {
            "order": order, "orders": per_order.numel(), "order_nats_per_token": float(per_order.mean()),
            "order_nats_per_token_se": order_se, "order_bits_per_token": float(per_order.mean()) / ln2,
            "order_bits_per_token_se": None if order_se is None else order_se / ln2,
            "score_total": score_total if trained.loss.output_kind == "log_score" else None,
        }
    return Evaluation(
        checkpoint=checkpoint,
        text=path,
        tokens=tokens.numel(),
        unscored_tokens=text.numel() - tokens.numel(),
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
        unigram_entropy_nats=unigram_entropy_of(text),
        mean_sequence_unigram_entropy_nats=sum(samplers.unigram_entropy(blocks) * blocks.shape[0]
                                               for blocks, _ in groups) / nats.numel(),
        training_unigram_nats_per_token=None if unigram is None else float(-unigram[tokens].sum()) / total_tokens,
        kind=trained.kind,
        prior_nats_per_token=sum(total_prior_nats(trained, blocks) for blocks, _ in groups) / total_tokens,
        **fixed,
    )

def format_evaluation(result: Evaluation) -> str:
    """A human-readable report of `result`."""

    def pm(value: float, se: float | None, digits: int) -> str:
        if se is None:
            return f"{value:.{digits}f} (SE needs >= 2 sequences)"
        return f"{value:.{digits}f} +- {se:.{digits}f}"

    lines = [
        f"checkpoint: {result.checkpoint} ({result.kind} model)",
        f"text: {result.text}: {result.tokens} tokens in {result.sequences} sequence(s) of <= {result.seq_len}"
        + (f" (the last {result.unscored_tokens}, less than a block, not scored)" if result.unscored_tokens else ""),
        f"draws per sequence: {result.time_samples} (stratified), seed {result.seed}",
        f"{'exact NLL:' if result.kind == 'autoregressive' else 'negative ELBO:':<18}"
        f"{pm(result.nats_per_token, result.nats_per_token_se, 4)} nats/token",
        f"                  {pm(result.bits_per_token, result.bits_per_token_se, 4)} bits/token (nats / ln 2)",
        f"perplexity bound: {pm(result.perplexity_bound, result.perplexity_bound_se, 3)} (exp of nats/token)",
        f"+- is {result.standard_error}",
    ]
    if result.training_unigram_nats_per_token is not None:
        lines.append(
            f"unigram model of the training blocks on this text: {result.training_unigram_nats_per_token:.4f} "
            f"nats/token ({result.training_unigram_nats_per_token / math.log(2.0):.4f} bits): the baseline to beat"
        )
    lines.append(
        f"the text's own unigram entropy (a property of the text, not a model): {result.unigram_entropy_nats:.4f} "
        f"nats/token ({result.unigram_entropy_nats / math.log(2.0):.4f} bits); mean per sequence "
        f"{result.mean_sequence_unigram_entropy_nats:.4f} nats"
    )
    if result.kind == "diffusion":
        lines.insert(5, f"  of which the t = 1 prior term: {result.prior_nats_per_token:.6f} nats/token")
    if result.order is not None:
        where = "" if result.score_total is None else f", score network at sigma-bar = {result.score_total:g}"
        se = "" if result.order_nats_per_token_se is None else f" +- {result.order_nats_per_token_se:.4f}"
        lines.append(
            f"fixed-order likelihood ({result.order}, {result.orders} order(s){where}): "
            f"{result.order_nats_per_token:.4f}{se} nats/token ({result.order_bits_per_token:.4f} bits; +- is the "
            "SE of the mean over orders)"
        )
    return "\n".join(lines) + "\n"

ORDERS = ("left-to-right", "random")
