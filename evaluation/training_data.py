"""The data a model was trained on, rebuilt from the `data` section its checkpoint stores (no Lightning)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from data import TextBlocks, unigram_log_probs
from evaluation.restore import TrainedModel
from models.pretrained.native import read_checkpoint

DATA_MODULE_ONLY = ("batch_size", "num_workers")  # arguments of the Lightning data module, not of the blocks


def training_data(source: TrainedModel | str, config: str | None = None) -> TextBlocks:
    """The blocks a model was trained on (the same corpus, tokenizer, seq_len and seeded train/validation split),
    from the `data` section of a TrainedModel or of the checkpoint at a path (or of the YAML `config`)."""
    data = source.data if isinstance(source, TrainedModel) else read_checkpoint(source, config=config).data
    if not data:
        what = source.source if isinstance(source, TrainedModel) else source
        raise ValueError(f"ckpt_path: {what!r} stores no training data section; pass the YAML it was trained with")
    return _blocks(tuple(sorted((key, _frozen(value)) for key, value in data.items() if key not in DATA_MODULE_ONLY)))


def _frozen(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


@lru_cache(maxsize=4)
def _blocks(arguments: tuple[tuple[str, object], ...]) -> TextBlocks:
    """TextBlocks(**arguments), built once per process for the same arguments (tokenising is cached on disk,
    but reading and splitting a corpus still takes seconds)."""
    return TextBlocks(**{key: list(value) if isinstance(value, tuple) else value for key, value in arguments})


def validation_blocks(data: TextBlocks, count: int | None = None) -> Tensor:
    """(N, seq_len) long: the first `count` (None: all) validation blocks of `data`, in the order `lightning
    validate` reads them, so that limit_val_batches = count / batch_size validates on the same blocks."""
    total = len(data.validation)
    if count is not None and not 1 <= count <= total:
        raise ValueError(f"count: the data has {total} validation blocks; ask for 1 to {total}, got {count}")
    return torch.stack([data.validation[index] for index in range(total if count is None else count)])


def training_unigram(trained: TrainedModel) -> Tensor | None:
    """(V,) float64 log-probabilities of the add-1/2 unigram model of the blocks `trained` was trained on (the
    `val/unigram_bits_per_token` reference of `lightning fit`); None when the checkpoint stores no data section."""
    if not trained.data:
        return None
    data = training_data(trained)
    return unigram_log_probs(data.train, data.vocab_size)
