"""`TextDataModule`: the Lightning data module of `lightning fit`, batches of the blocks of data.TextBlocks.

The corpus, tokenizer, token cache, blocks and split are `data.TextBlocks`'s (Lightning-free, shared with the
evaluation library); this module adds the DataLoaders: LongTensor (batch_size, seq_len) batches, the training
blocks reshuffled each epoch by a generator seeded with `seed`. With `labels` (data/labels.py) the training and
validation batches are (tokens (batch_size, seq_len), labels (batch_size,)) and `class_names` (linked to the
model's in the CLI) lists the classes.
"""

from __future__ import annotations

import lightning as L
from torch import Generator
from torch.utils.data import DataLoader

from ctmc.checks import check_int
from data import LabelledBlocks, TextBlocks, TokenBlocks, Tokenizer


class TextDataModule(L.LightningDataModule):
    """Batches of token blocks from text files, split into training and validation sets by block.

    paths, tokenizer, seq_len, val_fraction, cache_dir, seed, test_path, labels, mixed_blocks: as data.TextBlocks
    (paths None: the embedded works of Shakespeare; tokenizer "gpt2" or "char"; labels None, "genre", "work",
    "directory" or a mapping file). batch_size: blocks per batch. num_workers: DataLoader worker processes. seed
    also seeds the training shuffle.

    The corpus is tokenised (or its cache found) in the constructor, so that every bad input fails here, before
    training starts, and `vocab_size` and the block counts are known at once.
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
        labels: str | None = None,
        mixed_blocks: str = "majority",
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, 1, "use a positive batch size")
        check_int("num_workers", num_workers, 0, "use 0 to load in the main process")
        self.save_hyperparameters()
        self.blocks = TextBlocks(paths, tokenizer, seq_len, val_fraction, cache_dir, seed, test_path, labels,
                                 mixed_blocks)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.corpus = self.blocks.corpus
        self.token_path = self.blocks.token_path
        self.num_tokens = self.blocks.num_tokens
        self.train_dataset = self.blocks.train
        self.val_dataset = self.blocks.validation
        self.test_dataset = self.blocks.test

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer named by the `tokenizer` argument."""
        return self.blocks.tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of clean token ids, [0, vocab_size), the end-of-text id included."""
        return self.blocks.vocab_size

    @property
    def class_names(self) -> list[str]:
        """The classes of the labels, in class-id order ([] without labels); linked to model.class_names."""
        return list(self.blocks.class_names)

    @property
    def num_classes(self) -> int:
        """The number of classes C (0 without labels)."""
        return self.blocks.num_classes

    def _batches(self, dataset: TokenBlocks) -> TokenBlocks | LabelledBlocks:
        """The dataset a loader reads: the blocks, with their labels when the data has labels."""
        return self.blocks.labelled(dataset) if self.num_classes else dataset

    def _loader(self, dataset: TokenBlocks | LabelledBlocks, shuffle: bool) -> DataLoader:
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
        return self._loader(self._batches(self.train_dataset), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation blocks in index order."""
        return self._loader(self._batches(self.val_dataset), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Blocks of `test_path` in order (without labels), or the validation blocks when it is None."""
        labelled = self.test_dataset is self.val_dataset
        return self._loader(self._batches(self.test_dataset) if labelled else self.test_dataset, shuffle=False)
