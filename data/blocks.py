"""Fixed-length blocks of a token file, and the deterministic train/validation split of the blocks.

Packing: a token stream of N tokens (documents joined by eot_id) is cut into n_blocks = N // seq_len
consecutive blocks, block b = tokens[b * seq_len : (b + 1) * seq_len]; the last N mod seq_len tokens are
dropped. A block may span the end of one document and the start of the next.

Split: the blocks are permuted by `numpy.random.RandomState(seed).permutation(n_blocks)`, whose stream
NumPy keeps fixed across versions and platforms (NEP 19); the first n_val = max(1, round(val_fraction *
n_blocks)) of the permutation are validation blocks, the rest training blocks (each set sorted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from data.tokens import open_tokens, token_count


@dataclass(frozen=True)
class BlockSplit:
    """Block indices of the training and validation sets: disjoint, sorted, together 0..n_blocks-1."""

    train: np.ndarray
    validation: np.ndarray


def validation_block_count(n_blocks: int, val_fraction: float) -> int:
    """max(1, round(val_fraction * n_blocks)): the number of validation blocks."""
    return max(1, round(val_fraction * n_blocks))


def split_blocks(n_blocks: int, val_fraction: float, seed: int) -> BlockSplit:
    """Seeded split of blocks 0..n_blocks-1 into training and validation (module docstring)."""
    n_val = validation_block_count(n_blocks, val_fraction)
    if n_val >= n_blocks:
        raise ValueError(
            f"n_blocks: {n_blocks} block(s) leave none for training at val_fraction={val_fraction}; "
            "use more text, a smaller seq_len or a smaller val_fraction"
        )
    order = np.random.RandomState(seed).permutation(n_blocks)
    return BlockSplit(train=np.sort(order[n_val:]), validation=np.sort(order[:n_val]))


class TokenBlocks(Dataset[Tensor]):
    """Blocks of `seq_len` tokens of the token file at `token_path`.

    blocks: which block indices this dataset holds (default: all N // seq_len). Item i is the LongTensor
    (seq_len,) of block blocks[i]. The memory map is opened on first access in each process, so the
    dataset pickles cheaply into DataLoader workers.
    """

    def __init__(self, token_path: Path, seq_len: int, blocks: np.ndarray | None = None) -> None:
        self.token_path = Path(token_path)
        self.seq_len = seq_len
        self.n_blocks = token_count(self.token_path) // seq_len
        self.blocks = np.arange(self.n_blocks) if blocks is None else np.asarray(blocks, dtype=np.int64)
        self._tokens: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> Tensor:
        if self._tokens is None:
            self._tokens = open_tokens(self.token_path)
        start = int(self.blocks[index]) * self.seq_len
        return torch.from_numpy(self._tokens[start : start + self.seq_len].astype(np.int64))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tokens"] = None
        return state


class LabelledBlocks(Dataset[tuple[Tensor, Tensor]]):
    """The blocks of `blocks` with one class label each: item i is (LongTensor (seq_len,), LongTensor () label),
    so that a DataLoader yields (tokens (B, seq_len), labels (B,)). labels: (len(blocks),) int class ids, aligned
    with blocks.blocks (data/labels.py)."""

    def __init__(self, blocks: TokenBlocks, labels: np.ndarray) -> None:
        if len(labels) != len(blocks):
            raise ValueError(f"labels: {len(labels)} labels for {len(blocks)} blocks; give one label per block")
        self.blocks = blocks
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.blocks[index], self.labels[index]
