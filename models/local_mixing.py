"""Local token mixing: a residual depthwise convolution along the sequence ("Canon layers", Allen-Zhu 2025).

    h_l <- h_l + sum_{j=0}^{k-1} w_j * h_{l + j - offset}        (w_j in R^H, per-channel; h_m = 0 outside [0, L))

with offset = k - 1 for a causal model (position l mixes l - k + 1 .. l only, so causality is kept) and
offset = (k - 1) // 2 otherwise (a centred window: l - (k - 1) // 2 .. l + k // 2). With a segment size s
(`forward(h, segment=s)`, the block diffusion network's blocks) the sum runs within each run of s consecutive
positions [j s, (j + 1) s) only: h_m = 0 outside the run of l, so no state crosses a block edge. With `left`
as well (`forward(h, segment=s, left=...)`) the positions before a run's start are given (the block diffusion
network's block-causal mixing: the clean tokens just before a block) and only those after its end are 0.

Why: with RoPE attention a position can read its neighbours only once the attention has learned sharp
relative-position patterns. An autoregressive model does not need that for its strongest statistic, the previous
token, which sits in its own residual stream; a masked-diffusion denoiser does: the input at a masked position is
the mask embedding. A k-wide mixing layer on the embeddings and before every block gives each position its
neighbours' states directly, at k * H parameters per layer (docs/training.md, "Experiments": the masked models
leave the unigram level within the main job's budget with it and not without).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctmc.checks import check_int


class LocalMixing(nn.Module):
    """h (B, L, H) -> h + depthwise_conv_k(h) along L (module doc); causal=True looks only backwards.

    The weights are initialised as torch's Conv1d default (uniform in +-1/sqrt(k)), so neighbours are mixed
    in from the first step.
    """

    def __init__(self, hidden_size: int, kernel_size: int, causal: bool = False) -> None:
        super().__init__()
        check_int("local_mixing kernel size", kernel_size, 1, "0 disables local mixing in the trunk")
        self.kernel_size = kernel_size
        self.causal = causal
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size, groups=hidden_size, bias=False)

    @property
    def padding(self) -> tuple[int, int]:
        """(left, right) zero padding along L: (k - 1, 0) causal, ((k - 1) // 2, k // 2) centred."""
        k = self.kernel_size
        return (k - 1, 0) if self.causal else ((k - 1) // 2, k // 2)

    def forward(self, h: Tensor, segment: int | None = None, left: Tensor | None = None) -> Tensor:
        """h: (B, L, H) -> (B, L, H). segment = s: mix within the runs [j s, (j + 1) s) only, with zero padding
        at every run's edges (the last run may be shorter); None: one run, the whole sequence. left: None, or
        (B, R, P, H) with R = ceil(L / s) runs and P = padding[0]: the states run j reads in place of its left zero
        padding (h_m for m in [j s - P, j s)); the right edges stay zero."""
        batch, length, width = h.shape
        if left is not None:
            runs = -(-length // segment)
            before, after = self.padding
            padded = F.pad(h, (0, 0, 0, runs * segment - length)).reshape(batch * runs, segment, width)
            window = torch.cat([left.reshape(batch * runs, before, width).to(h.dtype), padded,
                                padded.new_zeros(batch * runs, after, width)], dim=1)
            mixed = self.conv(window.transpose(1, 2)).transpose(1, 2)  # (B R, s, H): no padding left to add
            return h + mixed.reshape(batch, runs * segment, width)[:, :length]
        if segment is None or length <= segment:
            mixed = self.conv(F.pad(h.transpose(1, 2), self.padding))  # (B, H, L)
            return h + mixed.transpose(1, 2)
        runs = -(-length // segment)
        padded = F.pad(h, (0, 0, 0, runs * segment - length))  # zeros after a shorter last run
        mixed = self.forward(padded.reshape(batch * runs, segment, width))
        return mixed.reshape(batch, runs * segment, width)[:, :length]
