"""Class labels of blocks (data/labels.py, data/shakespeare_works.py).

References: the First Folio's catalogue written out here by section (for the genre table); the headings of the
embedded works; for the block rule, the char tokenizer's known token stream (UTF-8 bytes of each document, then
256) labelled token by token and counted block by block in plain Python; each work's GPT-2 token count for the
work labels of the embedded corpus.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from data import TextBlocks
from data.corpus import default_corpus_documents
from data.labels import read_mapping
from data.shakespeare_works import GENRES, WORKS, heading_of, work_of
from data.tokenizers import GPT2Tokenizer
from training.datamodule import TextDataModule

EOT = 256
# The First Folio (1623), "A Catalogue of the severall Comedies, Histories, and Tragedies", by section; Troilus and
# Cressida is printed between the histories and the tragedies, as "The Tragedie of Troylus and Cressida".
FOLIO_COMEDIES = {"tempest", "two-gentlemen-of-verona", "merry-wives-of-windsor", "measure-for-measure",
                  "comedy-of-errors", "much-ado-about-nothing", "loves-labours-lost", "midsummer-nights-dream",
                  "merchant-of-venice", "as-you-like-it", "taming-of-the-shrew", "alls-well-that-ends-well",
                  "twelfth-night", "winters-tale"}
FOLIO_HISTORIES = {"king-john", "richard-ii", "henry-iv-part-1", "henry-iv-part-2", "henry-v", "henry-vi-part-1",
                   "henry-vi-part-2", "henry-vi-part-3", "richard-iii", "henry-viii"}
FOLIO_TRAGEDIES = {"troilus-and-cressida", "coriolanus", "titus-andronicus", "romeo-and-juliet", "timon-of-athens",
                   "julius-caesar", "macbeth", "hamlet", "king-lear", "othello", "antony-and-cleopatra", "cymbeline"}
POEMS = {"sonnets", "a-lovers-complaint", "passionate-pilgrim", "phoenix-and-the-turtle", "rape-of-lucrece"}


def test_genres_are_the_first_folio_sections_with_pericles_a_comedy_and_the_poems_apart():
    by_genre = {genre: {work.name for work in WORKS if work.genre == genre} for genre in GENRES}
    assert by_genre == {"comedy": FOLIO_COMEDIES | {"pericles"}, "history": FOLIO_HISTORIES,
                        "tragedy": FOLIO_TRAGEDIES, "poem": POEMS}
    assert [len(by_genre[genre]) for genre in GENRES] == [15, 10, 12, 5]


def test_every_embedded_work_is_found_by_its_heading_once():
    documents = default_corpus_documents()
    assert [work_of(document) for document in documents] == list(WORKS)  # in corpus order, each once
    assert len({work.heading for work in WORKS}) == len({work.name for work in WORKS}) == 42


def test_a_heading_outside_the_table_is_refused():
    assert heading_of("\n\n  THE TWO NOBLE KINSMEN \nby ...") == "THE TWO NOBLE KINSMEN"
    with pytest.raises(ValueError, match="labels: a document of the corpus starts with 'THE TWO NOBLE KINSMEN'"):
        work_of("THE TWO NOBLE KINSMEN\n\nby John Fletcher and William Shakespeare")


def test_work_labels_of_the_embedded_corpus_count_each_works_blocks():
    """Blocks labelled with a work: its token count / 32, give or take the blocks it shares with its neighbours."""
    data = TextBlocks(seq_len=32, labels="work")
    assert data.class_names == tuple(work.name for work in WORKS)
    tokenizer = GPT2Tokenizer()
    tokens = np.array([len(tokenizer.encode(document)) + 1 for document in default_corpus_documents()])
    labels = np.concatenate([data.labels_of(data.train), data.labels_of(data.validation)])
    counts = np.bincount(labels, minlength=42)
    assert np.all(np.abs(counts - tokens / 32) <= 1.5)
    genre = TextBlocks(seq_len=32, labels="genre")
    works = np.array([GENRES.index(work.genre) for work in WORKS])
    assert np.array_equal(genre.labels_of(genre.validation), works[data.labels_of(data.validation)])


# ------------------------------------------------------------------------------------------------ the block rule
DOCUMENTS = {  # class -> documents (one file per class; "\n\f\n" separates documents in a file)
    "alpha": ["aaaaaaaaaaa", "bb", "ccccccccccccccccccccc"],
    "beta": ["dddd", "eeeeeeeeeeeeeeeeeeeeeeeeee", "f"],
    "gamma": ["gggggggggggggggggggggggggggggggggg"],
}


@pytest.fixture
def class_root(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for name, documents in DOCUMENTS.items():
        (root / name).mkdir(parents=True)
        (root / name / "text.txt").write_text("\n\f\n".join(documents), encoding="utf-8")
    return root


def brute_force_labels(seq_len: int) -> tuple[list[int], list[bool]]:
    """Per block of the char stream: the label most of its tokens carry (ties: smallest id) and whether all do."""
    token_labels = []
    for label, name in enumerate(sorted(DOCUMENTS)):
        for document in DOCUMENTS[name]:
            token_labels += [label] * (len(document.encode("utf-8")) + 1)  # the document's eot carries its label
    majority, pure = [], []
    for block in range(len(token_labels) // seq_len):
        counts = Counter(token_labels[block * seq_len : (block + 1) * seq_len])
        top = max(counts.values())
        majority.append(min(label for label, count in counts.items() if count == top))
        pure.append(len(counts) == 1)
    return majority, pure


@pytest.mark.parametrize("seq_len", [4, 6, 9])
def test_block_labels_are_the_majority_of_their_tokens_labels(class_root, seq_len):
    data = TextBlocks(str(class_root), tokenizer="char", seq_len=seq_len, val_fraction=0.2, labels="directory")
    assert data.class_names == ("alpha", "beta", "gamma")
    majority, pure = brute_force_labels(seq_len)
    assert any(not flag for flag in pure)  # the rule is exercised on mixed blocks
    for blocks in (data.train, data.validation):
        assert data.labels_of(blocks).tolist() == [majority[block] for block in blocks.blocks]
    dropped = TextBlocks(str(class_root), tokenizer="char", seq_len=seq_len, val_fraction=0.2, labels="directory",
                         mixed_blocks="drop")
    for blocks, kept in ((data.train, dropped.train), (data.validation, dropped.validation)):
        assert kept.blocks.tolist() == [block for block in blocks.blocks if pure[block]]


def test_a_tie_goes_to_the_smallest_class_id(class_root):
    """alpha's stream is tokens 0..36 (11 + 2 + 21 characters, an eot after each), beta's 37..70, gamma's 71..105:
    with seq_len 2, block 18 holds tokens 36, 37 (alpha, beta) and block 35 tokens 70, 71 (beta, gamma)."""
    data = TextBlocks(str(class_root), tokenizer="char", seq_len=2, val_fraction=0.2, labels="directory")
    labels = np.zeros(53, dtype=np.int64)
    for blocks in (data.train, data.validation):
        labels[blocks.blocks] = data.labels_of(blocks)
    assert labels[18] == 0 and labels[35] == 1
    assert labels[17] == 0 and labels[19] == 1 and labels[36] == 2  # the blocks beside them are pure


def test_mapping_file_gives_the_same_labels_as_directories(class_root, tmp_path):
    mapping = tmp_path / "labels.tsv"
    mapping.write_text("# file<TAB>class\n" + "".join(f"corpus/{name}/text.txt\t{name}\n" for name in DOCUMENTS)
                       + "\nunused.txt\tdelta\n", encoding="utf-8")
    paths = [str(class_root / name / "text.txt") for name in sorted(DOCUMENTS)]
    by_file = TextBlocks(paths, tokenizer="char", seq_len=5, val_fraction=0.2, labels=str(mapping))
    by_directory = TextBlocks(str(class_root), tokenizer="char", seq_len=5, val_fraction=0.2, labels="directory")
    assert by_file.class_names == by_directory.class_names
    assert np.array_equal(by_file.labels_of(by_file.train), by_directory.labels_of(by_directory.train))
    assert read_mapping(mapping)[(class_root / "beta" / "text.txt").resolve()] == "beta"


def test_a_list_of_class_directories_is_labelled_by_their_names(class_root):
    data = TextBlocks([str(class_root / "gamma"), str(class_root / "alpha")], tokenizer="char", seq_len=5,
                      val_fraction=0.2, labels="directory")
    assert data.class_names == ("alpha", "gamma")
    assert data.class_shares().sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"labels": "genre"}, "labels: genre labels the works of the embedded Shakespeare (paths: null)"),
        ({"labels": "colour"}, "labels: 'colour' is neither genre, work nor directory"),
        ({"labels": "directory", "mixed_blocks": "split"}, "mixed_blocks: must be one of majority, drop"),
        ({"labels": "directory", "paths": "gamma"}, "of one class ('gamma'); conditional training needs at least two"),
        ({"labels": "directory", "seq_len": 30}, "mixed_blocks: drop leaves"),
    ],
)
def test_bad_label_arguments_are_one_line_errors(class_root, arguments, message):
    arguments = {"tokenizer": "char", "seq_len": 5, "val_fraction": 0.2, "paths": str(class_root), **arguments}
    if arguments["paths"] == "gamma":
        arguments["paths"] = str(class_root / "gamma")
    if arguments.get("seq_len") == 30:
        arguments["mixed_blocks"] = "drop"
    with pytest.raises(ValueError) as error:
        TextBlocks(**arguments)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_directory_labels_need_paths_and_a_mapping_file_lists_every_file(class_root, tmp_path):
    with pytest.raises(ValueError, match="labels: directory labels a corpus of class directories; give paths"):
        TextBlocks(None, labels="directory")
    mapping = tmp_path / "partial.tsv"
    mapping.write_text("corpus/alpha/text.txt\talpha\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"gives no class for .*beta.*text.txt.*add a line text.txt<TAB>CLASS"):
        TextBlocks(str(class_root / "beta"), tokenizer="char", seq_len=5, labels=str(mapping))
    mapping.write_text("corpus/alpha/text.txt alpha\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1 is not FILE<TAB>CLASS"):
        TextBlocks(str(class_root / "alpha"), tokenizer="char", seq_len=5, labels=str(mapping))


def test_the_data_module_yields_tokens_and_labels(class_root):
    module = TextDataModule(str(class_root), tokenizer="char", seq_len=5, batch_size=4, val_fraction=0.2,
                            labels="directory")
    assert module.class_names == ["alpha", "beta", "gamma"] and module.num_classes == 3
    for loader, dataset in ((module.train_dataloader(), module.train_dataset),
                            (module.val_dataloader(), module.val_dataset)):
        tokens, labels = next(iter(loader))
        assert tokens.shape == (4, 5) and labels.shape == (4,) and labels.dtype == torch.long
        expected = module.blocks.labels_of(dataset)
        index = [next(i for i in range(len(dataset)) if torch.equal(dataset[i], row)) for row in tokens]
        assert labels.tolist() == expected[index].tolist()
    unlabelled = TextDataModule(str(class_root / "gamma"), tokenizer="char", seq_len=5, batch_size=4, val_fraction=0.2)
    assert unlabelled.class_names == [] and isinstance(next(iter(unlabelled.train_dataloader())), torch.Tensor)
