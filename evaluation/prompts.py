"""Prompts as templates: fixed text with [MASK] gaps, turned into the fixed positions a sampler keeps.

`--prefix P` is the template "P[MASK]", `--suffix S` is "[MASK]S", both "P[MASK]S". The gaps share the positions
the fixed text leaves free in `length` tokens equally (the first gaps take one more when it does not divide).
Fixed positions are never changed by the sampler (`samplers.Sampler.generate(given=..., tokens=...)`), so a
prefix is kept verbatim (with GPT-2's BPE, a space that ends a piece before a gap is left to the gap's first
token: see `template_pieces`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from data import Tokenizer

MASK = "[MASK]"

def prompt_template(prefix: str | None, suffix: str | None, infill: str | None) -> str | None:
    """The template of the prompt options: `infill` itself, or prefix + [MASK] + suffix; None: no prompt."""
    if infill is not None:
        if prefix is not None or suffix is not None:
            raise ValueError("--infill cannot be combined with --prefix/--suffix; put the text in the template")
        if MASK not in infill:
            raise ValueError(f"--infill {infill!r} has no {MASK} gap; mark the text to generate with {MASK}")
        return infill
    if prefix is None and suffix is None:
        return None
    return f"{prefix or ''}{MASK}{suffix or ''}"

def gap_lengths(free: int, gaps: int) -> list[int]:
    """`free` positions shared by `gaps` gaps as equally as possible, the first ones taking the remainder."""
    return [free // gaps + (1 if index < free % gaps else 0) for index in range(gaps)]

def folds_space_into_words(tokenizer: Tokenizer) -> bool:
    """True if `tokenizer` encodes a space and the word after it as one token (GPT-2 BPE: " a" is one id)."""
    return len(tokenizer.encode(" a")) == 1

def template_pieces(template: str, tokenizer: Tokenizer) -> list[list[int]]:
    """The token ids of the text pieces between the [MASK] gaps of `template`, in order.

    With a tokenizer that folds a space into the word after it, a space that ends a piece before a gap is
    left to the gap: "KING: [MASK] Lear" gives "KING:" and " Lear", and the gap's first token (" my") carries
    the space, as in the tokenisation of "KING: my Lear"; encoding "KING: " would fix a lone space token and
    the text would read "KING:  my Lear". Character tokenizers keep every piece verbatim.
    """
    texts = template.split(MASK)
    if folds_space_into_words(tokenizer):
        texts = [text[:-1] if index < len(texts) - 1 and text.endswith(" ") else text
                 for index, text in enumerate(texts)]
    return [tokenizer.encode(text) for text in texts]

def conditioning(
    template: str, tokenizer: Tokenizer, length: int, max_length: int | None = None
) -> tuple[Tensor, Tensor]:
    """(given (length,) bool, tokens (length,) long): the fixed positions of `template` and their token ids.

    Each text piece between [MASK] gaps is encoded (template_pieces) and placed in order; the gaps fill the
    rest. max_length: the longest sequence the network accepts, named in the error when the prompt needs more.
    """
    pieces = template_pieces(template, tokenizer)
    fixed = sum(len(piece) for piece in pieces)
    gaps = len(pieces) - 1
    if fixed + gaps > length:
        needed = fixed + gaps
        if max_length is not None and needed > max_length:
            raise ValueError(
                f"the prompt takes {fixed} tokens and {gaps} gap(s) need at least one each ({needed} in all), more "
                f"than the network's max_length={max_length}; shorten the prompt"
            )
        limit = "" if max_length is None else f" (the network accepts up to {max_length})"
        raise ValueError(
            f"the prompt takes {fixed} tokens and {gaps} gap(s) need at least one each, more than --length "
            f"{length}; raise --length to at least {needed}{limit} or shorten the prompt"
        )
    given = torch.zeros(length, dtype=torch.bool)
    tokens = torch.zeros(length, dtype=torch.long)
    position = 0
    for piece, gap in zip(pieces, [*gap_lengths(length - fixed, gaps), 0], strict=True):
        given[position : position + len(piece)] = True
        tokens[position : position + len(piece)] = torch.tensor(piece, dtype=torch.long)
        position += len(piece) + gap
    return given, tokens
