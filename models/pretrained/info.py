"""What a released checkpoint is (`PretrainedInfo`, attached to the network `from_pretrained` returns) and the one
exception raised for checkpoint content that cannot be used (`CheckpointError`)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class CheckpointError(ValueError):
    """Checkpoint content this loader cannot use: a missing or unexpected key, a shape that differs, an unknown layout
    or an unsupported option. The message is one line that names the file and the key."""


@dataclass(frozen=True)
class PretrainedInfo:
    """Facts about a loaded checkpoint, for the commands that sample, evaluate or fine-tune it.

    layout: "native" (this project's checkpoint or exported directory), "sedd", "radd" or "mdlm"; path: the
    directory or file given to from_pretrained; weights: the file the weights were read from; ema: True when they
    are the exponential moving average kept in training (a run directory, a Lightning .ckpt), False for the single
    set of weights of a hub directory; vocab_size: V, the clean tokens (the mask excluded); seq_len: the trained
    context (the config's model length); tokenizer: "gpt2" for GPT-2 BPE data, None when the config does not say;
    output: "log_score" (a concrete-score network read at sigma-bar, models.DiT) or "log_probs" (a clean-token
    denoiser, (B, L, V) log-probabilities); time_conditioned: whether the network reads sigma-bar; loss: the name of
    this project's loss for the model's training objective ("losses.ScoreEntropy", "losses.TDCE",
    "losses.LambdaDCE", "losses.MDLMNELBO"; None for an autoregressive model); config: the raw config (for "native":
    the training run's `model` and `data` sections); kind: "diffusion" or "autoregressive"; class_names: the classes a
    conditional network reads (label c in [0, C), C the null label), () for an unconditional one.
    """


    layout: str
    path: str
    weights: str
    ema: bool
    vocab_size: int
    seq_len: int
    tokenizer: str | None
    output: str
    time_conditioned: bool
    loss: str | None
    config: Mapping[str, Any] = field(repr=False, hash=False)
    kind: str = "diffusion"
    class_names: tuple[str, ...] = ()
