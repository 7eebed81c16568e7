"""`TextBlocks`: a text corpus tokenised into fixed-length blocks with a seeded train/validation split.

Pipeline: `TextCorpus` (files -> documents, data/corpus.py) -> token file (documents joined by eot_id,
cached as uint16, data/tokens.py) -> blocks of seq_len tokens and a seeded train/validation split
(data/blocks.py). No Lightning: the training data module (training.datamodule.TextDataModule) and the
evaluation library (the validation blocks a checkpoint was trained with) both build on it.
"""

from __future__ import annotations

import numpy as np

from ctmc.checks import check_int
from data.blocks import LabelledBlocks, TokenBlocks, split_blocks, validation_block_count
from data.corpus import TextCorpus
from data.labels import MIXED_BLOCK_RULES, block_labels, check_scheme, class_paths, document_labels
from data.tokenizers import Tokenizer, tokenizer_from_name
from data.tokens import token_count, tokenize_corpus

MAX_SEED = 2**32 - 1


class TextBlocks:
    """The blocks of a corpus, split into training and validation sets by block.

    paths: None for the embedded works of Shakespeare; a directory (its *.txt files, sorted by name); a
        .txt file; or a list of files and directories. Each file is a document (a line holding only a
        form feed starts a new one); documents are joined with the tokenizer's end-of-text id.
    tokenizer: "gpt2" (GPT-2 BPE, vocab 50257) or "char" (UTF-8 bytes, vocab 257).
    seq_len: tokens per block (>= 2); the token stream is cut into consecutive blocks, the remainder dropped.
    val_fraction: in (0, 1); max(1, round(val_fraction * n_blocks)) blocks, drawn by a permutation seeded
        with `seed`, form the validation set.
    cache_dir: where token files are cached; None: next to the data, or the user cache dir
        (~/.cache/ctmc-diffusion) for the embedded corpus or read-only data.
    seed: seeds the split; the same seed gives the same split on any machine.
    test_path: a text file (or directory) whose blocks form `test`; None: the validation blocks.
    labels: None (no labels), "genre" or "work" (the embedded Shakespeare), "directory" (a directory per class) or
        the path of a mapping file (FILE<TAB>CLASS lines): every block gets a class (data/labels.py), `class_names`
        lists the classes and `labelled(split)` gives (tokens, label) items. The blocks and the split do not change.
    mixed_blocks: "majority" (a block whose tokens come from documents of several classes takes the class most of
        them carry) or "drop" (such blocks are left out of train and validation).

    The corpus is tokenised (or its cache found) in the constructor, so that every bad input fails here, with a
    one-line error naming the argument. Items of `train`, `validation` and `test` are LongTensor (seq_len,) in
    [0, vocab_size).
    """

    def __init__(
        self,
        paths: list[str] | str | None = None,
        tokenizer: str = "gpt2",
        seq_len: int = 128,
        val_fraction: float = 0.05,
        cache_dir: str | None = None,
        seed: int = 0,
        test_path: str | None = None,
        labels: str | None = None,
        mixed_blocks: str = "majority",
    ) -> None:
        check_int("seq_len", seq_len, 2, "a block needs at least two tokens")
        check_int("seed", seed, 0, f"use a seed in [0, {MAX_SEED}]")
        if seed > MAX_SEED:
            raise ValueError(f"seed: {seed} is above {MAX_SEED}; use a seed in [0, {MAX_SEED}]")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: must lie in (0, 1), got {val_fraction!r}; 0.05 is typical")
        if mixed_blocks not in MIXED_BLOCK_RULES:
            raise ValueError(f"mixed_blocks: must be one of {', '.join(MIXED_BLOCK_RULES)}, got {mixed_blocks!r}")
        check_scheme(labels, paths)
        self.tokenizer: Tokenizer = tokenizer_from_name(tokenizer)
        self.tokenizer_name = tokenizer
        self.seq_len = seq_len
        self.corpus = TextCorpus(class_paths(paths, labels), argument="paths")
        self.token_path = tokenize_corpus(self.corpus, self.tokenizer, tokenizer, cache_dir)
        self.num_tokens = token_count(self.token_path)
        n_blocks = self.num_tokens // seq_len
        if n_blocks < 2 or validation_block_count(n_blocks, val_fraction) >= n_blocks:
            raise ValueError(
                f"paths: the corpus has {self.num_tokens} tokens, {n_blocks} block(s) of seq_len={seq_len}, "
                f"too few for one training and one validation block at val_fraction={val_fraction}; "
                "give more text or a smaller seq_len"
            )
        split = split_blocks(n_blocks, val_fraction, seed)
        train, validation = split.train, split.validation
        self.class_names: tuple[str, ...] = ()
        self._block_labels: np.ndarray | None = None  # (n_blocks,) class of every block of the token file
        if labels is not None:
            table = document_labels(self.corpus, labels)
            found = block_labels(self.token_path, self.tokenizer.eot_id, seq_len, table.documents,
                                 len(table.class_names))
            self.class_names, self._block_labels = table.class_names, found.labels
            if mixed_blocks == "drop":
                train, validation = train[found.pure[train]], validation[found.pure[validation]]
                if len(train) == 0 or len(validation) == 0:
                    raise ValueError(
                        f"mixed_blocks: drop leaves {len(train)} training and {len(validation)} validation blocks of "
                        f"one class each; use mixed_blocks: majority, a smaller seq_len or longer documents"
                    )
        self.train = TokenBlocks(self.token_path, seq_len, train)
        self.validation = TokenBlocks(self.token_path, seq_len, validation)
        self.test = self.validation
        if test_path is not None:
            test_corpus = TextCorpus(test_path, argument="test_path")
            test_tokens = tokenize_corpus(test_corpus, self.tokenizer, tokenizer, cache_dir)
            self.test = TokenBlocks(test_tokens, seq_len)
            if len(self.test) == 0:
                raise ValueError(
                    f"test_path: {test_path!r} has {token_count(test_tokens)} tokens, fewer than "
                    f"seq_len={seq_len}; give a longer text or a smaller seq_len"
                )

    @property
    def vocab_size(self) -> int:
        """Number of clean token ids, [0, vocab_size), the end-of-text id included."""
        return self.tokenizer.vocab_size

    @property
    def num_classes(self) -> int:
        """The number of classes C (0 without labels)."""
        return len(self.class_names)

    def labels_of(self, blocks: TokenBlocks) -> np.ndarray:
        """(len(blocks),) int64 class ids of the blocks of `blocks` (train or validation); ValueError without labels."""
        if self._block_labels is None:
            raise ValueError("labels: the data has no labels; set labels (genre, work, directory or a mapping file)")
        return self._block_labels[blocks.blocks]

    def labelled(self, blocks: TokenBlocks) -> LabelledBlocks:
        """`blocks` (train or validation) with their labels: items (tokens (seq_len,), label ())."""
        return LabelledBlocks(blocks, self.labels_of(blocks))

    def class_shares(self) -> np.ndarray:
        """(C,) float64: the share of each class among the training blocks."""
        counts = np.bincount(self.labels_of(self.train), minlength=self.num_classes)
        return counts / counts.sum()
