"""TextDataModule and its parts. References: for the char tokenizer the token stream is known exactly
(UTF-8 bytes of each document followed by 256), so packing is checked against it; the split against
NumPy's frozen RandomState stream; the cache by file mtimes and a count of tokenisations."""

import os
import pickle

import numpy as np
import pytest
import torch

from data import tokens as data_tokens
from data.blocks import TokenBlocks, split_blocks
from data.corpus import TextCorpus, default_corpus_documents, default_corpus_path
from data.tokenizers import GPT2Tokenizer
from data.tokens import CACHE_SUBDIR, open_tokens, resolve_cache_dir
from training.datamodule import TextDataModule

DOCUMENTS = {
    "a.txt": "First document, with some words.\n" * 20,
    "b.txt": "Second one: é and ünïcödé.\n" * 15,
    "c.txt": "Third.\n\f\nFourth, after a form feed line.\n" * 1,
}
EOT = 256


def expected_char_stream(documents):
    """UTF-8 bytes of each document followed by the end-of-text id 256."""
    stream = []
    for document in documents:
        stream.extend(document.encode("utf-8"))
        stream.append(EOT)
    return stream


@pytest.fixture
def corpus_dir(tmp_path):
    directory = tmp_path / "corpus"
    directory.mkdir()
    for name, text in DOCUMENTS.items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / "ignored.md").write_text("not a .txt file")
    return directory


@pytest.fixture
def tokenisations(monkeypatch):
    """Counts calls of write_token_file (each call tokenises a corpus)."""
    calls = []
    original = data_tokens.write_token_file

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(data_tokens, "write_token_file", counting)
    return calls


def make(paths, **kwargs):
    kwargs = {"tokenizer": "char", "seq_len": 16, "batch_size": 4, **kwargs}
    return TextDataModule(paths=str(paths) if not isinstance(paths, list) else paths, **kwargs)


def corpus_documents():
    third_a, third_b = DOCUMENTS["c.txt"].split("\n\f\n")
    return [DOCUMENTS["a.txt"], DOCUMENTS["b.txt"], third_a, third_b]


def test_corpus_reads_sorted_txt_files_split_at_form_feeds(corpus_dir):
    corpus = TextCorpus(str(corpus_dir))
    assert [p.name for p in corpus.files] == ["a.txt", "b.txt", "c.txt"]
    assert list(corpus.documents()) == corpus_documents()


def test_token_file_is_documents_joined_by_eot(corpus_dir):
    module = make(corpus_dir)
    stream = expected_char_stream(corpus_documents())
    assert module.num_tokens == len(stream)
    assert open_tokens(module.token_path).tolist() == stream
    assert module.token_path.parent == corpus_dir / CACHE_SUBDIR


def test_blocks_pack_the_stream_and_drop_the_remainder(corpus_dir):
    module = make(corpus_dir, seq_len=16)
    stream = torch.tensor(expected_char_stream(corpus_documents()))
    everything = TokenBlocks(module.token_path, 16)
    assert len(everything) == len(stream) // 16
    blocks = torch.stack([everything[i] for i in range(len(everything))])
    assert blocks.dtype == torch.long and blocks.shape == (len(stream) // 16, 16)
    assert torch.equal(blocks.flatten(), stream[: blocks.numel()])
    assert (blocks == EOT).sum() >= 3  # separators between the four documents (the last may be cut)


def test_split_is_seeded_disjoint_and_complete():
    """Reference: NumPy's RandomState(0).permutation(10) = [2 8 4 9 1 6 7 3 0 5], frozen by NEP 19."""
    split = split_blocks(10, 0.2, seed=0)
    assert split.validation.tolist() == [2, 8]
    assert split.train.tolist() == [0, 1, 3, 4, 5, 6, 7, 9]
    again = split_blocks(1000, 0.05, seed=7)
    same = split_blocks(1000, 0.05, seed=7)
    other = split_blocks(1000, 0.05, seed=8)
    assert np.array_equal(again.validation, same.validation)
    assert not np.array_equal(again.validation, other.validation)
    assert len(again.validation) == 50
    assert set(again.train).isdisjoint(again.validation)
    assert sorted([*again.train, *again.validation]) == list(range(1000))


def test_module_split_and_loaders(corpus_dir):
    first, second = make(corpus_dir, seed=3), make(corpus_dir, seed=3)
    assert np.array_equal(first.val_dataset.blocks, second.val_dataset.blocks)
    assert set(first.train_dataset.blocks).isdisjoint(first.val_dataset.blocks)
    assert len(first.train_dataset) + len(first.val_dataset) == first.num_tokens // 16
    batch = next(iter(first.train_dataloader()))
    assert batch.shape == (4, 16) and batch.dtype == torch.long
    assert torch.equal(batch, next(iter(second.train_dataloader())))
    validation = torch.cat(list(first.val_dataloader()))
    assert torch.equal(validation, torch.stack([first.val_dataset[i] for i in range(len(first.val_dataset))]))
    assert torch.equal(torch.cat(list(first.test_dataloader())), validation)


def test_vocab_size_and_tokenizer_after_init(corpus_dir):
    assert make(corpus_dir).vocab_size == 257
    module = make(corpus_dir, tokenizer="gpt2", seq_len=8)
    assert module.vocab_size == 50257 and isinstance(module.tokenizer, GPT2Tokenizer)
    tokens = open_tokens(module.token_path)
    assert module.tokenizer.decode(tokens.tolist()).startswith(DOCUMENTS["a.txt"] + "<|endoftext|>")


def test_cache_is_reused(corpus_dir, tokenisations):
    first = make(corpus_dir)
    mtime = first.token_path.stat().st_mtime_ns
    second = make(corpus_dir, seq_len=32, seed=5)
    assert len(tokenisations) == 1
    assert second.token_path == first.token_path and second.token_path.stat().st_mtime_ns == mtime
    assert not [p for p in first.token_path.parent.iterdir() if p.suffix == ".tmp"]


def test_cache_is_invalidated_by_a_change(corpus_dir, tokenisations):
    first = make(corpus_dir)
    (corpus_dir / "b.txt").write_text("changed text " * 30)
    second = make(corpus_dir)
    assert len(tokenisations) == 2 and second.token_path != first.token_path
    assert open_tokens(second.token_path).tolist() == expected_char_stream(
        [DOCUMENTS["a.txt"], "changed text " * 30, *corpus_documents()[2:]]
    )
    third = make(corpus_dir, tokenizer="gpt2")
    assert len(tokenisations) == 3 and third.token_path.name.startswith("gpt2-")


def test_cache_dir_argument_and_user_cache(corpus_dir, tmp_path, monkeypatch):
    module = make(corpus_dir, cache_dir=str(tmp_path / "cache"))
    assert module.token_path.parent == tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir(TextCorpus(None), None) == tmp_path / "xdg" / "ctmc-diffusion"


def test_list_of_files_and_test_path(corpus_dir, tmp_path):
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("x" * 40)
    module = make([str(corpus_dir / "b.txt"), str(corpus_dir / "a.txt")], test_path=str(held_out))
    assert open_tokens(module.token_path).tolist() == expected_char_stream([DOCUMENTS["b.txt"], DOCUMENTS["a.txt"]])
    test_blocks = torch.cat(list(module.test_dataloader()))
    assert test_blocks.shape == (2, 16) and torch.equal(test_blocks, torch.full((2, 16), ord("x")))


def test_dataset_pickles_without_its_memory_map(corpus_dir):
    dataset = make(corpus_dir).train_dataset
    first = dataset[0]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._tokens is None and torch.equal(copy[0], first)


def test_worker_processes(corpus_dir):
    module = make(corpus_dir, num_workers=1, val_fraction=0.5)
    assert torch.equal(
        torch.cat(list(module.val_dataloader())),
        torch.stack([module.val_dataset[i] for i in range(len(module.val_dataset))]),
    )


def test_embedded_shakespeare_with_gpt2(tmp_path):
    """Pinned counts of the shipped corpus: 42 works, 1,566,001 GPT-2 tokens (42 of them end-of-text)."""
    assert default_corpus_path().name == "shakespeare.txt.xz"
    documents = default_corpus_documents()
    assert len(documents) == 42 and documents[0].startswith("ALL'S WELL THAT ENDS WELL")
    module = TextDataModule(cache_dir=str(tmp_path), seq_len=128)
    tokens = open_tokens(module.token_path)
    assert module.num_tokens == 1_566_001
    assert int((tokens == 50256).sum()) == 42 and tokens[-1] == 50256
    assert len(module.train_dataset) + len(module.val_dataset) == 1_566_001 // 128
    assert len(module.val_dataset) == round(0.05 * (1_566_001 // 128))
    assert "HAMLET" in module.tokenizer.decode(tokens[:2_000_000].tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paths": "MISSING"}, "paths: .*does not exist"),
        ({"paths": "EMPTY_DIR"}, "paths: directory .* holds no \\*.txt files"),
        ({"paths": []}, "paths: is an empty list"),
        ({"paths": "BLANK"}, "paths: the corpus .* holds no text"),
        ({"paths": "SHORT"}, "paths: the corpus has 11 tokens, 0 block"),
        ({"paths": "SHORT", "seq_len": 5, "val_fraction": 0.8}, "paths: .*11 tokens, 2 block.*=0.8"),
        ({"tokenizer": "words"}, "tokenizer: unknown name 'words'"),
        ({"seq_len": 1}, "seq_len must be an int >= 2"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"num_workers": -1}, "num_workers must be an int >= 0"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"val_fraction": 0.0}, "val_fraction: must lie in \\(0, 1\\)"),
        ({"val_fraction": 1.0}, "val_fraction: must lie in \\(0, 1\\)"),
        ({"paths": "LATIN1"}, "paths: .* is not UTF-8"),
        ({"test_path": "MISSING"}, "test_path: .*does not exist"),
        ({"test_path": "SHORT"}, "test_path: .* has 11 tokens, fewer than seq_len=16"),
    ],
)
def test_bad_input_is_refused_in_init(corpus_dir, tmp_path, kwargs, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("  \n\n")
    (tmp_path / "short.txt").write_text("ten chars!")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    names = {
        "MISSING": str(tmp_path / "missing.txt"),
        "EMPTY_DIR": str(tmp_path / "empty"),
        "BLANK": str(tmp_path / "blank"),
        "SHORT": str(tmp_path / "short.txt"),
        "LATIN1": str(tmp_path / "latin1.txt"),
    }
    kwargs = {key: (names.get(v, v) if isinstance(v, str) else v) for key, v in kwargs.items()}
    kwargs.setdefault("paths", str(corpus_dir))
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_no_temporary_files_left_after_a_failure(tmp_path):
    (tmp_path / "blank.txt").write_text("\n")
    with pytest.raises(ValueError):
        make(str(tmp_path / "blank.txt"), cache_dir=str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "cache") == []
