"""`TextDataModule`: text files (or the embedded Shakespeare) as batches of fixed-length token blocks.

Pipeline: `TextCorpus` (files -> documents, training/data_corpus.py) -> token file (documents joined by
eot_id, cached as uint16, training/data_tokens.py) -> blocks of seq_len tokens and a seeded
train/validation split (training/data_blocks.py) -> DataLoaders of LongTensor (batch_size, seq_len).
"""

from __future__ import annotations

import lightning as L
from torch import Generator
from torch.utils.data import DataLoader

from training.data_blocks import TokenBlocks, split_blocks, validation_block_count
from training.data_corpus import TextCorpus
from training.data_tokens import token_count, tokenize_corpus
from training.tokenizers import Tokenizer, tokenizer_from_name

MAX_SEED = 2**32 - 1


def _check_int(name: str, value: int, minimum: int, fix: str) -> None:
    """Raise ValueError naming `name` unless `value` is an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}; {fix}")


class TextDataModule(L.LightningDataModule):
    """Batches of token blocks from text files, split into training and validation sets by block.

    paths: None for the embedded works of Shakespeare; a directory (its *.txt files, sorted by name); a
        .txt file; or a list of files and directories. Each file is a document (a line holding only a
        form feed starts a new one); documents are joined with the tokenizer's end-of-text id.
    tokenizer: "gpt2" (GPT-2 BPE, vocab 50257) or "char" (UTF-8 bytes, vocab 257).
    seq_len: tokens per block (>= 2); the token stream is cut into consecutive blocks, the remainder
        dropped.
    batch_size: blocks per batch.
    val_fraction: in (0, 1); max(1, round(val_fraction * n_blocks)) blocks, drawn by a permutation seeded
        with `seed`, form the validation set.
    num_workers: DataLoader worker processes.
    cache_dir: where token files are cached; None: next to the data, or the user cache dir
        (~/.cache/ctmc-diffusion) for the embedded corpus or read-only data.
    seed: seeds the split and the training shuffle; the same seed gives the same split on any machine.
    test_path: a text file (or directory) for `test_dataloader`, all of it in blocks; None: the
        validation blocks.

    The corpus is tokenised (or its cache found) in the constructor, so that every bad input fails
    here, before training starts, and `vocab_size` and the block counts are known at once.
    Batches are LongTensor (batch_size, seq_len) in [0, vocab_size).
    """

    def __init__(
        self,
        paths: list[str] | str | None = None,
        tokenizer: str = "gpt2",
        seq_len: int = 128,
        batch_size: int = 8,
        val_fraction: float = 0.05,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        test_path: str | None = None,
    ) -> None:
        super().__init__()
        _check_int("seq_len", seq_len, 2, "a block needs at least two tokens")
        _check_int("batch_size", batch_size, 1, "use a positive batch size")
        _check_int("num_workers", num_workers, 0, "use 0 to load in the main process")
        _check_int("seed", seed, 0, f"use a seed in [0, {MAX_SEED}]")
        if seed > MAX_SEED:
            raise ValueError(f"seed: {seed} is above {MAX_SEED}; use a seed in [0, {MAX_SEED}]")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: must lie in (0, 1), got {val_fraction!r}; 0.05 is typical")
        self.save_hyperparameters()
        self._tokenizer = tokenizer_from_name(tokenizer)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

        self.corpus = TextCorpus(paths, argument="paths")
        self.token_path = tokenize_corpus(self.corpus, self._tokenizer, tokenizer, cache_dir)
        self.num_tokens = token_count(self.token_path)
        n_blocks = self.num_tokens // seq_len
        if n_blocks < 2 or validation_block_count(n_blocks, val_fraction) >= n_blocks:
            raise ValueError(
                f"paths: the corpus has {self.num_tokens} tokens, {n_blocks} block(s) of seq_len={seq_len}, "
                f"too few for one training and one validation block at val_fraction={val_fraction}; "
                "give more text or a smaller seq_len"
            )
        split = split_blocks(n_blocks, val_fraction, seed)
        self.train_dataset = TokenBlocks(self.token_path, seq_len, split.train)
        self.val_dataset = TokenBlocks(self.token_path, seq_len, split.validation)

        self.test_dataset = self.val_dataset
        if test_path is not None:
            test_corpus = TextCorpus(test_path, argument="test_path")
            test_tokens = tokenize_corpus(test_corpus, self._tokenizer, tokenizer, cache_dir)
            self.test_dataset = TokenBlocks(test_tokens, seq_len)
            if len(self.test_dataset) == 0:
                raise ValueError(
                    f"test_path: {test_path!r} has {token_count(test_tokens)} tokens, fewer than "
                    f"seq_len={seq_len}; give a longer text or a smaller seq_len"
                )

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer named by the `tokenizer` argument."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of clean token ids, [0, vocab_size), the end-of-text id included."""
        return self._tokenizer.vocab_size

    def _loader(self, dataset: TokenBlocks, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Training blocks, reshuffled each epoch by a generator seeded with `seed`."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation blocks in index order."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Blocks of `test_path` in order, or the validation blocks when it is None."""
        return self._loader(self.test_dataset, shuffle=False)
