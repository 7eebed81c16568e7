"""How a trained diffusion model writes `length` tokens: whole, block after block, in sliding windows, or not at all.

A network is trained on sequences of seq_len tokens (its trained positions; its max_length may be larger, but
positions past seq_len were never trained, and a whole sequence drawn there is off the model's domain). So:

- a block diffusion model (a `samplers.BlockModel`, e.g. models.BlockDenoiser) is always sampled block after
  block (`samplers.BlockSampler`: the inner sampler draws each block given the clean blocks before it, with the
  key/value cache over them; the context slides at seq_len positions), at any length: its blocks are its
  factorisation p(x) = prod_b p(x^b | x^{<b}), and a whole-sequence draw would condition on noisy blocks;
- a plain diffusion model writes length <= seq_len tokens as one sequence (the inner sampler alone);
- a plain model on the absorbing chain writes past seq_len in semi-autoregressive windows of seq_len tokens
  (`samplers.SemiAutoregressiveSampler`, MDLM's semi_ar: each window keeps its last seq_len - stride tokens as
  the next one's prompt and adds `stride` new ones); the prompt is exact there because masking does not depend
  on the data;
- a plain model on any other chain cannot continue a text (a clean prompt is not a state of its forward
  process at time t): a length past seq_len is refused in one line that names the models that can.

An autoregressive model is sampled ancestrally with a context that slides at seq_len (TrainedModel.
generate_ancestral), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import samplers
from evaluation.restore import TrainedModel

WHOLE, BLOCKS, SEMI_AUTOREGRESSIVE = "whole sequence", "block by block", "semi-autoregressive windows"
LONG_TEXT_MODELS = (
    "a block diffusion model (configs/bd3lm.yaml), a model on the absorbing chain (configs/sedd.yaml, "
    "configs/radd.yaml) or the AR model (configs/ar.yaml)"
)


@dataclass
class WritingPlan:
    """How `length` tokens are drawn. mode: WHOLE, BLOCKS or SEMI_AUTOREGRESSIVE; sampler: what draws them (the
    inner sampler itself for WHOLE, else its block-wise wrapper); model: what `sampler.generate` is called with;
    window: the trained positions seq_len; stride: the tokens each window adds (SEMI_AUTOREGRESSIVE) or the block
    size (BLOCKS), None for WHOLE."""

    mode: str
    sampler: samplers.Sampler | samplers.BlockSampler | samplers.SemiAutoregressiveSampler
    model: object
    window: int
    stride: int | None = None

    @property
    def continues(self) -> bool:
        """Whether the text is drawn left to right (a prompt can only be a prefix, and a stop token ends a row)."""
        return self.mode != WHOLE

    def describe(self) -> str:
        """One phrase for the output's footer, e.g. "block by block (4 tokens, context 32)"."""
        if self.mode == BLOCKS:
            return f"{self.mode} ({self.stride} tokens, context {self.window})"
        if self.mode == SEMI_AUTOREGRESSIVE:
            return f"{self.mode} ({self.window} tokens, {self.stride} new each)"
        return self.mode


def writing_plan(
    trained: TrainedModel,
    inner: samplers.Sampler,
    length: int,
    stride: int | None = None,
    cache: bool = True,
    sampling_model: samplers.ConcreteScore | samplers.Denoiser | None = None,
) -> WritingPlan:
    """The plan (module docstring) for `length` tokens of the diffusion model `trained` with the sampler `inner`.

    stride: the tokens each semi-autoregressive window adds, 1 <= stride < seq_len (default seq_len // 2: half a
    window of context); only for a plain absorbing-chain model past seq_len. cache: the key/value cache of a block model
    (False recomputes the context at every call: the same samples, slower). sampling_model: what a plain model's
    sampler reads (None: trained.sampling_model(); a guided model, evaluation.guidance); a block model reads its
    network. Raises ValueError (one line, naming
    --length or --stride) for a length a plain model on another chain cannot write, or a stride it does not use.
    """
    trained.require_kind("diffusion", "sampling with a reverse-time sampler")
    window = trained.seq_len
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"--length must be a positive integer, got {length!r}")
    network = trained.network
    if isinstance(network, samplers.BlockModel):
        if sampling_model is not None:
            raise ValueError("guided sampling (--label) is for plain diffusion models; a block diffusion model is "
                             "sampled block by block from its own network; leave --label out")
        if stride is not None:
            raise ValueError(
                f"--stride is for semi-autoregressive windows of a plain masked model; this block diffusion model "
                f"writes blocks of its block_size={network.block_size}; leave --stride out"
            )
        sampler = samplers.BlockSampler(inner, network.block_size, max_length=window, cache=cache)
        return WritingPlan(BLOCKS, sampler, network, window, network.block_size)
    model = trained.sampling_model() if sampling_model is None else sampling_model  # what a plain model's sampler reads
    if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride < window):
        raise ValueError(f"--stride must be an integer in [1, seq_len - 1 = {window - 1}] (the tokens each window "
                         f"adds after the seq_len - stride it keeps), got {stride!r}")
    if length <= window:
        if stride is not None:
            raise ValueError(f"--stride is used past the trained seq_len={window} only; --length {length} is drawn "
                             "as one sequence; leave --stride out or raise --length")
        return WritingPlan(WHOLE, inner, model, window)
    if not trained.process.rate_matrix.score_factorises:
        chain = type(trained.process.rate_matrix).__name__
        raise ValueError(
            f"--length {length} is past the seq_len={window} positions this model was trained on, and a model on the "
            f"{chain} chain cannot continue a text in windows (a clean prompt is no state of its forward process); "
            f"use --length <= {window}, or a model that writes past its length: {LONG_TEXT_MODELS}"
        )
    if stride is None:
        if window < 2:
            raise ValueError(f"--length {length} is past seq_len={window}, and a window of one token keeps no context")
        stride = window // 2
    sampler = samplers.SemiAutoregressiveSampler(inner, stride, window)
    return WritingPlan(SEMI_AUTOREGRESSIVE, sampler, model, window, stride)
