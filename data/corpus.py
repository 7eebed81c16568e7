"""Text corpora: which files, in which order, cut into which documents, and a fingerprint of them.

A corpus is an ordered list of text files (UTF-8; a name ending in .xz or .gz is decompressed). Each file
is cut into documents at every line that holds only a form feed ("\\n\\f\\n"); a file without such a line
is one document. Documents that are empty or only whitespace are skipped.

The embedded default corpus, `default_corpus_path()`, is the works of Shakespeare (42 plays and poems,
public domain, see data/assets/SHAKESPEARE_NOTICE.md), one document per work, in the order of the
source file names.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DOCUMENT_SEPARATOR = "\n\f\n"
SHAKESPEARE_PATH = Path(__file__).parent / "assets" / "shakespeare.txt.xz"
_HASH_CHUNK_BYTES = 1 << 20


def default_corpus_path() -> Path:
    """Path of the embedded Shakespeare corpus (xz-compressed UTF-8, works separated by "\\n\\f\\n")."""
    return SHAKESPEARE_PATH


def _open_text(path: Path) -> IO[str]:
    """`path` opened for reading UTF-8 text, decompressing .xz and .gz."""
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def default_corpus_documents() -> list[str]:
    """The works of Shakespeare, one string per work."""
    return list(TextCorpus(None).documents())


def _resolve_one(path: Path, argument: str) -> list[Path]:
    """The text files named by `path`: the file itself, or the sorted *.txt files of a directory."""
    if not path.exists():
        raise ValueError(f"{argument}: {str(path)!r} does not exist; give an existing .txt file or directory")
    if path.is_dir():
        found = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not found:
            raise ValueError(f"{argument}: directory {str(path)!r} holds no *.txt files; add some or name the files")
        return found
    return [path]


class TextCorpus:
    """An ordered list of text files, read as documents.

    paths: None (the embedded Shakespeare), a file or directory path, or a list of them; a directory
    stands for its *.txt files (not recursive) sorted by name. argument: the name used in error
    messages (the constructor argument the paths came from).
    """

    def __init__(self, paths: list[str] | str | None, argument: str = "paths") -> None:
        self.argument = argument
        self.embedded = paths is None
        if paths is None:
            self.files: tuple[Path, ...] = (SHAKESPEARE_PATH,)
            return
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if len(paths) == 0:
            raise ValueError(
                f"{argument}: is an empty list; give .txt files or a directory (paths=None is Shakespeare)"
            )
        files: list[Path] = []
        for path in paths:
            files.extend(_resolve_one(Path(path).expanduser(), argument))
        self.files = tuple(files)

    @property
    def home(self) -> Path | None:
        """The directory that holds the first file; None for the embedded corpus."""
        return None if self.embedded else self.files[0].parent

    def documents(self) -> Iterator[str]:
        """Each non-blank document of each file, in order (files are read one at a time)."""
        for _, document in self.documents_with_files():
            yield document

    def documents_with_files(self) -> Iterator[tuple[Path, str]]:
        """(file, document) for each non-blank document of each file, in order: `documents` with the file each
        document comes from (a document's label may be its file's, data/labels.py)."""
        for path in self.files:
            try:
                with _open_text(path) as handle:
                    text = handle.read()
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{self.argument}: {str(path)!r} is not UTF-8 ({error.reason} at byte {error.start}); "
                    "convert it to UTF-8"
                ) from None
            for document in text.split(DOCUMENT_SEPARATOR):
                if document.strip():
                    yield path, document

    def fingerprint(self) -> str:
        """sha256 (hex) over the sha256 of each file's bytes, in order: changes when any content does."""
        total = hashlib.sha256()
        for path in self.files:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
            total.update(digest.digest())
        return total.hexdigest()
