"""Token files: a corpus tokenised once into a flat uint16 array on disk, then read through np.memmap.

Layout: ids of document 1, eot_id, ids of document 2, eot_id, ... (every document is followed by the
end-of-text id), little-endian uint16, no header; the token count is the file size / 2.

Name: <cache dir>/<tokenizer name>-<key>.u16 with key = sha256(format version, tokenizer name, corpus
fingerprint)[:20], so a changed file, a changed file order or another tokenizer gives a new file and
the old one is left unused. Cache dir: `cache_dir` if given; else the directory of the corpus's first
file, under .ctmc-diffusion-cache/, when it is writable; else (and for the embedded corpus) the user
cache dir $XDG_CACHE_HOME/ctmc-diffusion or ~/.cache/ctmc-diffusion.

Files are written to a temporary name in the same directory and moved into place with os.replace, so
a reader never sees a partial file and concurrent writers (several processes) are harmless.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.corpus import TextCorpus
from data.tokenizers import Tokenizer

TOKEN_DTYPE = np.dtype("<u2")
FORMAT_VERSION = 1
CACHE_SUBDIR = ".ctmc-diffusion-cache"


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/ctmc-diffusion, or ~/.cache/ctmc-diffusion."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ctmc-diffusion"


def _writable(directory: Path) -> bool:
    """Whether files can be created in `directory`, or it can be created under a writable parent."""
    existing = directory if directory.exists() else directory.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def resolve_cache_dir(corpus: TextCorpus, cache_dir: str | None) -> Path:
    """Directory for the token files of `corpus` (see the module docstring for the rule)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if corpus.home is not None and _writable(corpus.home / CACHE_SUBDIR):
        return corpus.home / CACHE_SUBDIR
    return user_cache_dir()


def token_file_path(corpus: TextCorpus, tokenizer_name: str, cache_dir: str | None) -> Path:
    """Where the tokens of `corpus` under `tokenizer_name` are (or will be) cached."""
    key = hashlib.sha256(f"{FORMAT_VERSION}\0{tokenizer_name}\0{corpus.fingerprint()}".encode()).hexdigest()
    return resolve_cache_dir(corpus, cache_dir) / f"{tokenizer_name}-{key[:20]}.u16"


def document_ids(corpus: TextCorpus, tokenizer: Tokenizer) -> Iterator[list[int]]:
    """The ids of each document of `corpus`, in order, each followed by the tokenizer's end-of-text id."""
    for document in corpus.documents():
        ids = tokenizer.encode(document)
        ids.append(tokenizer.eot_id)
        yield ids


def write_token_file(corpus: TextCorpus, tokenizer: Tokenizer, path: Path) -> int:
    """Tokenise every document of `corpus`, each followed by eot_id, into `path` atomically.

    Returns the number of tokens written. Raises ValueError (naming the corpus argument) when the
    corpus holds no text.
    """
    if tokenizer.vocab_size > np.iinfo(TOKEN_DTYPE).max + 1:
        raise ValueError(f"tokenizer: vocab_size {tokenizer.vocab_size} does not fit in uint16 token files")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"cache_dir: cannot create {str(path.parent)!r} ({error}); give a writable directory"
        ) from None
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    count = 0
    try:
        with handle:
            for ids in document_ids(corpus, tokenizer):
                np.asarray(ids, dtype=TOKEN_DTYPE).tofile(handle)
                count += len(ids)
            handle.flush()
            os.fsync(handle.fileno())
        if count == 0:
            files = ", ".join(str(p) for p in corpus.files[:3])
            raise ValueError(f"{corpus.argument}: the corpus ({files}) holds no text; give files that contain text")
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; the cache may be shared
        os.replace(handle.name, path)
    finally:
        if os.path.exists(handle.name):
            os.remove(handle.name)
    return count


def tokenize_corpus(corpus: TextCorpus, tokenizer: Tokenizer, tokenizer_name: str, cache_dir: str | None) -> Path:
    """Path of the token file of `corpus`, written first when no valid cached one exists."""
    path = token_file_path(corpus, tokenizer_name, cache_dir)
    size = path.stat().st_size if path.is_file() else 0
    if size == 0 or size % TOKEN_DTYPE.itemsize != 0:
        write_token_file(corpus, tokenizer, path)
    return path


def token_count(path: Path) -> int:
    """Number of tokens in the token file at `path`."""
    return path.stat().st_size // TOKEN_DTYPE.itemsize


def open_tokens(path: Path) -> np.memmap:
    """The tokens at `path` as a read-only (n_tokens,) uint16 memory map."""
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
