"""An autoregressive (AR) transformer: the yardstick that discrete diffusion is compared with.

The same trunk as the RADD denoiser (models.trunk, plain pre-LN blocks, RoPE, no noise input), with causal
attention. A beginning-of-sequence state BOS = vocab_size is prepended and the last token dropped, so that
output position l sees x_0 .. x_{l-1} and predicts x_l:

    log p_theta(x) = sum_{l < L} log p_theta(x_l | x_{<l}),   p_theta(. | x_{<l}) = softmax(logits[:, l]),

an exact likelihood of all L tokens (the first included), directly comparable with a diffusion bound over
the same L tokens. The token embedding has V + 1 rows (the tokens and BOS) and the head V outputs, exactly
the shapes of RADDDenoiser (whose extra row is the mask), so both have the same parameter count per preset.
"""


import torch
import torch.nn.functional as F
from torch import Tensor

from models.token_transformer import TokenTransformer


class ARTransformer(TokenTransformer):
    """Causal transformer over V = vocab_size tokens: x (B, L) -> (B, L, V) log p(x_l = y | x_{<l}).

    max_length is the longest sequence scored (the context, BOS excluded). tie_weights uses the first V rows
    of the (V + 1)-row embedding as the output projection.
    """

    causal = True
    extra_state = "BOS"

    @property
    def bos_index(self) -> int:
        """The index of the BOS state: vocab_size."""
        return self.vocab_size

    def check_tokens(self, x: Tensor, name: str = "x", allow_empty: bool = False) -> None:
        """Raise TypeError/ValueError naming `name` unless x is (B, L) long in [0, V), 1 <= L <= max_length
        (L = 0 allowed with allow_empty): the trunk's check with the data tokens' range (BOS is no input)."""
        self.trunk.check_tokens(
            x, name, limit=self.vocab_size, allow_empty=allow_empty, limit_note=f" (vocab_size={self.vocab_size})"
        )

    def _with_bos(self, x: Tensor) -> Tensor:
        """(B, k) -> (B, k + 1) with BOS in front."""
        bos = torch.full((x.shape[0], 1), self.bos_index, dtype=x.dtype, device=x.device)
        return torch.cat([bos, x], dim=1)

    def logits(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        """Next-token logits, teacher-forced: x (B, L) long in [0, V) -> (B, L, V), row l a function of x[:, :l].

        label: (B,) long in [0, num_classes] (num_classes: the null label) or None (the null label), only with
        num_classes > 0; the logits are then those of p_theta(x_l | x_{<l}, c).
        Float32 (float64 for a float64 model). Softmax of row l is p_theta(x_l = . | x_{<l}).
        """
        self.check_tokens(x)
        return self.trunk(self._with_bos(x[:, :-1]), shift=self.label_shift(label, x.shape[0]))

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        """log p_theta(x_l = y | x_{<l}[, c]): x (B, L) long in [0, V) -> (B, L, V), logsumexp over y equal to 0.
        label: as in `logits`."""
        return torch.log_softmax(self.logits(x, label), dim=-1)

    def nll(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        """Exact negative log-likelihood -log p_theta(x[ | c]) = -sum_l log p_theta(x_l | x_{<l}[, c]) in nats.

        x: (B, L) long in [0, V); label: as in `logits`. Returns (B,) in the logits' dtype. Uses the fused
        cross-entropy, so it holds one (B, L, V) tensor (the logits) beyond the network's activations, and is the
        training objective as is.
        """
        logits = self.logits(x, label)
        per_token = F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none")
        return per_token.view(x.shape).sum(-1)

    def next_token_log_probs(self, prefix: Tensor, label: Tensor | None = None) -> Tensor:
        """log p_theta(x_k = . | x_{<k} = prefix[, c]) for ancestral sampling: prefix (B, k) long,
        0 <= k < max_length; label: as in `logits`.

        k = 0 (an empty prefix) gives the law of the first token. Returns (B, V) float32 (float64 model).
        """
        self.check_tokens(prefix, "prefix", allow_empty=True)
        if prefix.shape[1] >= self.max_length:
            raise ValueError(
                f"prefix has length {prefix.shape[1]}, but a next token fits only after a prefix shorter than "
                f"max_length={self.max_length}; truncate the prefix"
            )
        shift = self.label_shift(label, prefix.shape[0])
        return torch.log_softmax(self.trunk(self._with_bos(prefix), shift=shift)[:, -1], dim=-1)
