"""Tokenizers: the vendored GPT-2 ranks (sha256 against tiktoken's own r50k_base hash), known GPT-2 ids
(from the GPT-2 release), the pre-tokenisation pattern against tiktoken's r50k pattern, round trips
(hypothesis) and decoding of arbitrary in-range ids."""

import hashlib
import inspect
import socket

import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st
from tiktoken_ext import openai_public

from data import tokenizers
from data.tokenizers import (
    GPT2_PATTERN,
    GPT2_RANKS_PATH,
    GPT2_RANKS_SHA256,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    gpt2_encoding,
    tokenizer_from_name,
)

SAMPLE = (
    "Hello world! It's 2024, and we'll see: naïve café, 日本語, emoji 🎭 -- tabs\tand  spaces\n\n"
    "Enter HAMLET.\nTo be, or not to be: that is the question:\n   trailing   "
)


def test_ranks_file_matches_tiktoken_r50k_hash():
    """The vendored file hashes to the value tiktoken itself expects for r50k_base."""
    assert hashlib.sha256(GPT2_RANKS_PATH.read_bytes()).hexdigest() == GPT2_RANKS_SHA256
    assert GPT2_RANKS_SHA256 in inspect.getsource(openai_public.r50k_base)


def test_corrupted_ranks_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(GPT2_RANKS_PATH.read_bytes().replace(b" 0\n", b" 1\n", 1))
    monkeypatch.setattr(tokenizers, "GPT2_RANKS_PATH", bad)
    gpt2_encoding.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="sha256"):
            GPT2Tokenizer()
    finally:
        gpt2_encoding.cache_clear()


def test_gpt2_builds_without_network(monkeypatch):
    """Any socket use while loading would raise."""

    def no_network(*args, **kwargs):
        raise AssertionError("the GPT-2 tokenizer tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    gpt2_encoding.cache_clear()
    try:
        assert GPT2Tokenizer().encode("Hello world") == [15496, 995]
    finally:
        gpt2_encoding.cache_clear()


def test_gpt2_known_ids():
    """Ids from the GPT-2 release (encoder.json): "Hello"=15496, " world"=995, <|endoftext|>=50256."""
    tokenizer = GPT2Tokenizer()
    assert isinstance(tokenizer, Tokenizer)
    assert tokenizer.vocab_size == 50257 and tokenizer.eot_id == 50256
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.decode([50256]) == "<|endoftext|>"
    assert 50256 not in tokenizer.encode("a<|endoftext|>b")
    assert tokenizer.encoding.n_vocab == 50257


def test_gpt2_pattern_splits_like_tiktoken_r50k_pattern():
    """Reference: an Encoding over the same ranks with tiktoken's (faster) r50k_pat_str."""
    reference = tiktoken.Encoding(
        name="r50k_reference",
        pat_str=openai_public.r50k_pat_str,
        mergeable_ranks=gpt2_encoding()._mergeable_ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )
    assert gpt2_encoding()._pat_str == GPT2_PATTERN
    assert GPT2Tokenizer().encode(SAMPLE) == reference.encode_ordinary(SAMPLE)


@given(st.text(max_size=200))
def test_gpt2_round_trip(text):
    tokenizer = GPT2Tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text


@given(st.text(max_size=200))
def test_char_round_trip(text):
    tokenizer = CharTokenizer()
    ids = tokenizer.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("tokenizer", [GPT2Tokenizer(), CharTokenizer(), CharTokenizer("ab\n")])
def test_decode_accepts_every_id_in_range(tokenizer):
    """A diffusion sample may be any sequence of clean ids: all of them, shuffled, decode."""
    ids = list(range(tokenizer.vocab_size))
    assert isinstance(tokenizer.decode(ids[::-1]), str)
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([0, tokenizer.vocab_size])
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([-1])


def test_decode_accepts_tensors():
    import torch

    assert CharTokenizer().decode(torch.tensor([104, 105, 256, 33])) == "hi<|endoftext|>!"


def test_char_tokenizer_bytes():
    """Reference: UTF-8 encoding, "é" = C3 A9."""
    tokenizer = CharTokenizer()
    assert tokenizer.vocab_size == 257 and tokenizer.eot_id == 256
    assert tokenizer.encode("é") == [0xC3, 0xA9]
    assert tokenizer.decode([0xC3]) == "\ufffd"
    assert tokenizer.decode([104, 256, 105]) == "h<|endoftext|>i"


def test_char_tokenizer_alphabet():
    tokenizer = CharTokenizer("abc ")
    assert tokenizer.vocab_size == 5 and tokenizer.eot_id == 4
    assert tokenizer.encode("cab a") == [2, 0, 1, 3, 0]
    assert tokenizer.decode([2, 0, 1, 4]) == "cab<|endoftext|>"
    with pytest.raises(ValueError, match=r"text: .*'z'"):
        tokenizer.encode("zebra")


@pytest.mark.parametrize("alphabet", ["", "abca"])
def test_char_tokenizer_bad_alphabet(alphabet):
    with pytest.raises(ValueError, match="alphabet"):
        CharTokenizer(alphabet)


def test_tokenizer_from_name():
    assert isinstance(tokenizer_from_name("gpt2"), GPT2Tokenizer)
    assert tokenizer_from_name("char").vocab_size == 257
    with pytest.raises(ValueError, match=r"tokenizer: unknown name 'bpe'.*gpt2, char"):
        tokenizer_from_name("bpe")
