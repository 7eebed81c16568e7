"""Class labels of text blocks: a label per document, carried to the blocks cut from the token stream.

Documents get their labels by one of four schemes (the `labels` argument of data.TextBlocks):

- "genre": the embedded Shakespeare, each work by its genre (comedy, history, tragedy, poem; the table and its
  rules are data/shakespeare_works.py), found from the heading on the document's first line;
- "work": the embedded Shakespeare, each work its own class (42 classes, named as data/shakespeare_works.py);
- "directory": a user's corpus, each file by the name of the directory that holds it (paths: one directory whose
  subdirectories are the classes, root/comedy/*.txt, root/tragedy/*.txt, ...; or a list of class directories);
- the path of a mapping file: a user's corpus, each file by the class the file names for it, one line per text
  file, `FILE<TAB>CLASS` (FILE relative to the mapping file's directory, or absolute; blank lines and lines
  starting with # are skipped). Every file of the corpus must be listed; other lines are ignored.

Class ids follow GENRES for "genre", the corpus order for "work", and the sorted class names otherwise.

From documents to blocks. The token file holds the documents in order, each followed by the end-of-text id, and the
tokenizers never emit that id inside a text (data/tokenizers.py), so the document of token i is the number of
end-of-text ids before it: the boundaries are kept in the stream itself. Each token carries its document's label
(a document's closing end-of-text id included). A block takes the label that most of its tokens carry; a tie goes
to the smallest class id. A block whose tokens all carry one label is pure; `mixed_blocks="drop"` leaves the
others out of training and validation (the split is drawn over all blocks first, so the kept validation blocks are
a subset of an unlabelled run's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.corpus import TextCorpus
from data.shakespeare_works import GENRES, WORKS, work_of
from data.tokens import open_tokens

SCHEMES = ("genre", "work", "directory")  # besides the path of a mapping file
MIXED_BLOCK_RULES = ("majority", "drop")
EMBEDDED_SCHEMES = ("genre", "work")


@dataclass(frozen=True)
class DocumentLabels:
    """class_names: (C,) the classes, in class-id order; documents: (n_documents,) int64 class id of each document."""

    class_names: tuple[str, ...]
    documents: np.ndarray


@dataclass(frozen=True)
class BlockLabels:
    """labels: (n_blocks,) int64 majority class of each block (module docstring); pure: (n_blocks,) bool, all of its
    tokens carry that class."""

    labels: np.ndarray
    pure: np.ndarray


def check_scheme(labels: str | None, paths: object) -> None:
    """Raise ValueError (one line naming `labels`) unless it is None, a scheme of SCHEMES that fits `paths`, or an
    existing mapping file."""
    if labels is None:
        return
    if not isinstance(labels, str) or not labels:
        raise ValueError(f"labels: must be genre, work, directory or a mapping file, got {labels!r}")
    if labels in EMBEDDED_SCHEMES:
        if paths is not None:
            raise ValueError(
                f"labels: {labels} labels the works of the embedded Shakespeare (paths: null); label your own corpus "
                "with labels: directory (a directory per class) or a mapping file (FILE<TAB>CLASS lines)"
            )
        return
    if labels == "directory":
        if paths is None:
            raise ValueError("labels: directory labels a corpus of class directories; give paths, or use labels: genre "
                             "or work for the embedded Shakespeare")
        return
    if not Path(labels).expanduser().is_file():
        raise ValueError(
            f"labels: {labels!r} is neither genre, work nor directory, nor an existing mapping file (FILE<TAB>CLASS "
            "lines); give one of those"
        )
    if paths is None:
        raise ValueError("labels: a mapping file labels your own files; give paths, or use labels: genre or work")


def class_paths(paths: list[str] | str | None, labels: str | None) -> list[str] | str | None:
    """The corpus paths to read: with labels "directory" and `paths` one directory that holds no *.txt file, its
    subdirectories that hold some (sorted by name; each is a class), else `paths` unchanged."""
    if labels != "directory" or not isinstance(paths, (str, Path)):
        return paths
    root = Path(paths).expanduser()
    if not root.is_dir() or any(p.is_file() for p in root.glob("*.txt")):
        return paths
    classes = sorted(str(p) for p in root.iterdir() if p.is_dir() and any(q.is_file() for q in p.glob("*.txt")))
    if not classes:
        raise ValueError(f"paths: {str(root)!r} holds neither *.txt files nor class subdirectories with *.txt files; "
                         "put each class's texts in a subdirectory named after the class")
    return classes


def read_mapping(path: str | Path) -> dict[Path, str]:
    """{resolved file path: class} from a mapping file of `FILE<TAB>CLASS` lines (module docstring)."""
    mapping_file = Path(path).expanduser()
    mapping: dict[Path, str] = {}
    for number, line in enumerate(mapping_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, tab, label = line.partition("\t")
        if not tab or not name.strip() or not label.strip():
            raise ValueError(f"labels: {str(mapping_file)!r} line {number} is not FILE<TAB>CLASS: {line[:60]!r}; "
                             "separate the file and its class with a tab")
        file = Path(name.strip()).expanduser()
        mapping[(file if file.is_absolute() else mapping_file.parent / file).resolve()] = label.strip()
    return mapping


def document_labels(corpus: TextCorpus, labels: str) -> DocumentLabels:
    """The class of every document of `corpus` under the scheme `labels` (module docstring; check_scheme first)."""
    if labels in EMBEDDED_SCHEMES:
        works = [work_of(document) for document in corpus.documents()]
        names = GENRES if labels == "genre" else tuple(work.name for work in WORKS)
        keys = [work.genre if labels == "genre" else work.name for work in works]
        return DocumentLabels(names, np.array([names.index(key) for key in keys], dtype=np.int64))
    mapping = read_mapping(labels) if labels != "directory" else None
    files: dict[Path, str] = {}
    documents: list[str] = []
    for path, _ in corpus.documents_with_files():
        if path not in files:
            if mapping is None:
                files[path] = path.parent.name
            elif path.resolve() in mapping:
                files[path] = mapping[path.resolve()]
            else:
                raise ValueError(f"labels: the mapping file {labels!r} gives no class for {str(path)!r}; add a line "
                                 f"{path.name}<TAB>CLASS")
        documents.append(files[path])
    names = tuple(sorted(set(documents)))
    if len(names) < 2:
        raise ValueError(f"labels: every document of the corpus is of one class ({names[0]!r}); conditional training "
                         "needs at least two classes")
    return DocumentLabels(names, np.array([names.index(name) for name in documents], dtype=np.int64))


def block_labels(token_path: Path, eot_id: int, seq_len: int, documents: np.ndarray, num_classes: int) -> BlockLabels:
    """The label of every block of seq_len tokens of the token file (module docstring: the document of a token is the
    number of end-of-text ids before it; a block's label is the one most of its tokens carry, ties to the smallest
    class id). documents: (n_documents,) class id of each document, in order."""
    tokens = open_tokens(token_path)
    ends = np.flatnonzero(tokens == eot_id)
    if len(ends) != len(documents):
        raise ValueError(f"labels: the token file {str(token_path)!r} holds {len(ends)} documents, the corpus "
                         f"{len(documents)}; delete the token file so that it is written again")
    n_blocks = len(tokens) // seq_len
    lengths = np.diff(np.concatenate([[-1], ends]))  # tokens of each document, its end-of-text id included
    token_labels = np.repeat(documents, lengths)[: n_blocks * seq_len].reshape(n_blocks, seq_len)
    cells = (np.arange(n_blocks)[:, None] * num_classes + token_labels).ravel()
    counts = np.bincount(cells, minlength=n_blocks * num_classes).reshape(n_blocks, num_classes)
    return BlockLabels(labels=counts.argmax(axis=1).astype(np.int64), pure=counts.max(axis=1) == seq_len)
