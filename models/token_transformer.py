"""The trunk shared by the RADD denoiser and the AR model: V + 1 input states, V outputs, no noise input.

Both read the V tokens and one extra state (RADD: the mask; AR: the beginning-of-sequence state), both at index
V, and both return V columns (the extra state is never a target). They differ only in the attention (RADD
bidirectional, AR causal) and in what they do with the output, so the construction lives here once.
"""

from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ctmc.checks import check_int
from models.labels import LabelEmbedding, check_num_classes, label_vector
from models.presets import count_parameters, preset_arguments
from models.trunk import TransformerTrunk

Network = TypeVar("Network", bound="TokenTransformer")


class TokenTransformer(nn.Module):
    """TransformerTrunk(V + 1 states -> V outputs, no conditioning); subclasses set `causal` and `extra_state`.

    tie_weights uses the first V rows of the (V + 1)-row token embedding as the output projection.
    local_mixing = k > 0 adds a width-k residual depthwise convolution on the embeddings and before every block
    (models.local_mixing; causal for the AR model). num_classes = C > 0 makes the network class-conditional: a
    zero-initialised (C + 1)-row label embedding (models.labels; row C is the null label) is added to every token
    embedding of a sequence; 0 (the default) is the unconditional network, with exactly its old parameters.
    """

    causal: bool = False
    extra_state: str = "extra state"  # what state V is, for messages ("mask", "BOS")

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        max_length: int = 1024,
        dropout: float = 0.0,
        tie_weights: bool = False,
        mlp_ratio: int = 4,
        local_mixing: int = 0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1, f"count the data tokens, {self.extra_state} excluded")
        self.num_classes = check_num_classes(num_classes)
        self.vocab_size = vocab_size
        self.max_length = max_length  # longest accepted input
        self.trunk = TransformerTrunk(
            num_states=vocab_size + 1,
            output_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            cond_dim=None,
            max_length=max_length,
            dropout=dropout,
            tie_weights=tie_weights,
            mlp_ratio=mlp_ratio,
            local_mixing=local_mixing,
            causal=self.causal,
        )
        # After the trunk, which validates hidden_size.
        self.label_embedding = LabelEmbedding(num_classes, hidden_size) if num_classes else None

    def label_shift(self, label: Tensor | None, batch_size: int) -> Tensor | None:
        """The (B, hidden_size) vector added to the token embeddings of each sequence for `label` ((B,) long in
        [0, num_classes], None: the null label), or None for an unconditional network (which refuses a label)."""
        return label_vector(self.label_embedding, label, batch_size)

    @classmethod
    def from_preset(cls: type[Network], name: str, vocab_size: int, **overrides: Any) -> Network:
        """The network with the size PRESETS[name] (cond_dim unused); overrides as in the constructor."""
        arguments = preset_arguments(name, **overrides)
        arguments.pop("cond_dim")
        return cls(vocab_size=vocab_size, **arguments)

    @property
    def num_parameters(self) -> int:
        """count_parameters(self): scalar parameters, tied tensors counted once."""
        return count_parameters(self)

    @torch.no_grad()
    def init_output_bias(self, log_probs: Tensor) -> None:
        """Set the output bias to log_probs (V,), e.g. log unigram frequencies: with the zero output weight the
        network starts as that unigram model (RADD: a unigram denoiser; AR: a unigram next-token law)."""
        if log_probs.shape != (self.vocab_size,):
            raise ValueError(
                f"log_probs must have shape (vocab_size,) = ({self.vocab_size},), got {tuple(log_probs.shape)}"
            )
        self.trunk.output_bias.copy_(log_probs)
