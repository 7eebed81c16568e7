"""Tokenizers: text <-> integer ids, for the data pipeline and for reading diffusion samples.

Every tokenizer has the interface `Tokenizer`: ids of clean tokens lie in [0, vocab_size); `eot_id`
(end of text) is one of them and is what the data pipeline puts after each document; `encode` never
emits it (text that spells "<|endoftext|>" is encoded as ordinary text); `decode` accepts every id in
[0, vocab_size), in any order, because a diffusion sample is not guaranteed to be well-formed text.

- `GPT2Tokenizer`: GPT-2 byte-level BPE (the r50k_base ranks) through tiktoken, read from a vendored
  ranks file so that nothing is downloaded; vocab_size 50257, eot_id 50256.
- `CharTokenizer`: one token per UTF-8 byte (ids 0..255) and eot_id 256, vocab_size 257; lossless for
  any text. With an `alphabet`, one token per character of the alphabet and eot_id = len(alphabet).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import tiktoken

END_OF_TEXT = "<|endoftext|>"
GPT2_RANKS_PATH = Path(__file__).parent / "assets" / "gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# The pre-tokenisation pattern of the GPT-2 release. tiktoken's r50k_pat_str is a faster rewrite of
# it with possessive quantifiers (identical splits, see tests); this form works on every tiktoken.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}]+| ?[\p{N}]+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_VOCAB_SIZE = 50257
BYTE_VOCAB_SIZE = 257


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> ids. Ids lie in [0, vocab_size); eot_id is in that range and separates documents."""

    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without any end-of-text id."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; any id in [0, vocab_size) is accepted, eot_id reads as "<|endoftext|>"."""
        ...


def _check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """ids (a sequence, or a 1-D tensor or array) as Python ints, each checked to lie in [0, vocab_size)."""
    values = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    bad = [i for i in values if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(
            f"ids: {len(bad)} id(s) outside [0, {vocab_size}) (first: {bad[0]}); a diffusion sample "
            "must be mapped to clean tokens (no mask or padding ids) before decoding"
        )
    return values


@lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 BPE `tiktoken.Encoding`, built from the vendored ranks file (checked by sha256).

    The ranks file holds one "<base64 token bytes> <rank>" pair a line, as `tiktoken.load.
    load_tiktoken_bpe` reads it; it is parsed here because that function also copies local files into
    a temporary cache directory.
    """
    data = GPT2_RANKS_PATH.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_RANKS_SHA256:
        raise RuntimeError(
            f"{GPT2_RANKS_PATH}: sha256 {digest} does not match the GPT-2 (r50k_base) ranks "
            f"{GPT2_RANKS_SHA256}; the file is corrupted, reinstall the package to restore it"
        )
    pairs = (line.split() for line in data.splitlines() if line)
    ranks = {base64.b64decode(token): int(rank) for token, rank in pairs}
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={END_OF_TEXT: GPT2_VOCAB_SIZE - 1},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


class GPT2Tokenizer:
    """GPT-2 byte-level BPE: vocab_size 50257, eot_id 50256 ("<|endoftext|>")."""

    vocab_size: int = GPT2_VOCAB_SIZE
    eot_id: int = GPT2_VOCAB_SIZE - 1

    def __init__(self) -> None:
        self.encoding = gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text`; "<|endoftext|>" inside the text is encoded as ordinary characters."""
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; byte sequences that are not valid UTF-8 decode to U+FFFD."""
        return self.encoding.decode(_check_ids(ids, self.vocab_size), errors="replace")


class CharTokenizer:
    """Character-level tokens.

    alphabet None: one token per UTF-8 byte, ids 0..255, eot_id 256, vocab_size 257; every text
    round-trips exactly. alphabet "abc...": one token per character of the alphabet (ids in its order),
    eot_id = len(alphabet), vocab_size = len(alphabet) + 1; text with other characters is refused.
    """

    def __init__(self, alphabet: str | None = None) -> None:
        if alphabet is not None:
            if len(alphabet) == 0:
                raise ValueError("alphabet: is empty; give the characters to keep, or None for bytes")
            repeated = sorted({c for c in alphabet if alphabet.count(c) > 1})
            if repeated:
                raise ValueError(f"alphabet: characters {repeated!r} appear more than once; list each once")
        self.alphabet = alphabet
        self.vocab_size = BYTE_VOCAB_SIZE if alphabet is None else len(alphabet) + 1
        self.eot_id = self.vocab_size - 1
        self._index = None if alphabet is None else {c: i for i, c in enumerate(alphabet)}

    def encode(self, text: str) -> list[int]:
        """UTF-8 bytes of `text` (alphabet None) or the alphabet index of each character."""
        if self._index is None:
            return list(text.encode("utf-8"))
        try:
            return [self._index[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self._index))
            raise ValueError(
                f"text: characters {unknown[:10]!r} are not in the alphabet; add them to `alphabet` "
                "or use CharTokenizer() (bytes)"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; eot_id reads as "<|endoftext|>", invalid UTF-8 as U+FFFD."""
        values = _check_ids(ids, self.vocab_size)
        if self.alphabet is None:
            documents: list[list[int]] = [[]]
            for i in values:
                if i == self.eot_id:
                    documents.append([])
                else:
                    documents[-1].append(i)
            return END_OF_TEXT.join(bytes(d).decode("utf-8", errors="replace") for d in documents)
        return "".join(END_OF_TEXT if i == self.eot_id else self.alphabet[i] for i in values)


TOKENIZER_NAMES = ("gpt2", "char")


def tokenizer_from_name(name: str) -> GPT2Tokenizer | CharTokenizer:
    """The tokenizer called `name`: "gpt2" (GPT2Tokenizer) or "char" (CharTokenizer over bytes)."""
    if name == "gpt2":
        return GPT2Tokenizer()
    if name == "char":
        return CharTokenizer()
    raise ValueError(f"tokenizer: unknown name {name!r}; use one of {', '.join(TOKENIZER_NAMES)}")
