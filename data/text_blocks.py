"""`TextBlocks`: a text corpus tokenised into fixed-length blocks with a seeded train/validation split.

Pipeline: `TextCorpus` (files -> documents, data/corpus.py) -> token file (documents joined by eot_id,
cached as uint16, data/tokens.py) -> blocks of seq_len tokens and a seeded train/validation split
(data/blocks.py). No Lightning: the training data module (training.datamodule.TextDataModule) and the
evaluation library (the validation blocks a checkpoint was trained with) both build on it.
"""

from __future__ import annotations

from ctmc.checks import check_int
from data.blocks import TokenBlocks, split_blocks, validation_block_count
from data.corpus import TextCorpus
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
    ) -> None:
        check_int("seq_len", seq_len, 2, "a block needs at least two tokens")
        check_int("seed", seed, 0, f"use a seed in [0, {MAX_SEED}]")
        if seed > MAX_SEED:
            raise ValueError(f"seed: {seed} is above {MAX_SEED}; use a seed in [0, {MAX_SEED}]")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: must lie in (0, 1), got {val_fraction!r}; 0.05 is typical")
        self.tokenizer: Tokenizer = tokenizer_from_name(tokenizer)
        self.tokenizer_name = tokenizer
        self.seq_len = seq_len
        self.corpus = TextCorpus(paths, argument="paths")
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
        self.train = TokenBlocks(self.token_path, seq_len, split.train)
        self.validation = TokenBlocks(self.token_path, seq_len, split.validation)
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
