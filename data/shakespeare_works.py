"""The 42 works of the embedded Shakespeare corpus, each with its name and its genre, found by its heading.

Every document of data/assets/shakespeare.txt.xz starts with its title on the first line ("THE TRAGEDY OF KING
LEAR", "THE SONNETS", ...); `WORKS` maps that heading to a short name (a label on the command line, e.g.
`--label king-lear`) and a genre. The genres are the First Folio's (1623) three kinds of play, and a fourth for
the poems, which the Folio does not print:

- comedy, history, tragedy: the section of the Folio's catalogue the play stands in. Cymbeline is printed there as
  "The Tragedie of Cymbeline", among the tragedies, and Troilus and Cressida ("The Tragedie of Troylus and
  Cressida") between the histories and the tragedies; both count as tragedies.
- Pericles is not in the First Folio (it entered the Third Folio, 1664). It counts as a comedy, with the late
  romances that the Folio prints among the comedies (The Winter's Tale, The Tempest).
- poem: the Sonnets, A Lover's Complaint, The Passionate Pilgrim, The Phoenix and the Turtle and The Rape of
  Lucrece.

That gives 15 comedies, 10 histories, 12 tragedies and 5 poems (tests/data/test_labels.py checks the table against
the Folio's catalogue written out separately).
"""

from __future__ import annotations

from dataclasses import dataclass

GENRES = ("comedy", "history", "tragedy", "poem")  # class ids 0..3, in this order


@dataclass(frozen=True)
class Work:
    """heading: the first line of the work's document; name: a short label; genre: one of GENRES."""

    heading: str
    name: str
    genre: str


WORKS = (  # in the order of the corpus (its source files sorted by name)
    Work("ALL'S WELL THAT ENDS WELL", "alls-well-that-ends-well", "comedy"),
    Work("ANTONY AND CLEOPATRA", "antony-and-cleopatra", "tragedy"),
    Work("AS YOU LIKE IT", "as-you-like-it", "comedy"),
    Work("THE COMEDY OF ERRORS", "comedy-of-errors", "comedy"),
    Work("THE TRAGEDY OF CORIOLANUS", "coriolanus", "tragedy"),
    Work("CYMBELINE", "cymbeline", "tragedy"),
    Work("HAMLET, PRINCE OF DENMARK", "hamlet", "tragedy"),
    Work("KING HENRY IV, THE FIRST PART", "henry-iv-part-1", "history"),
    Work("KING HENRY IV, SECOND PART", "henry-iv-part-2", "history"),
    Work("THE LIFE OF KING HENRY V", "henry-v", "history"),
    Work("KING HENRY VI, FIRST PART", "henry-vi-part-1", "history"),
    Work("HISTORY OF KING HENRY THE SIXTH, SECOND PART", "henry-vi-part-2", "history"),
    Work("THE HISTORY OF KING HENRY THE SIXTH, THIRD PART", "henry-vi-part-3", "history"),
    Work("THE LIFE OF HENRY THE EIGHTH", "henry-viii", "history"),
    Work("KING JOHN", "king-john", "history"),
    Work("JULIUS CAESAR", "julius-caesar", "tragedy"),
    Work("THE TRAGEDY OF KING LEAR", "king-lear", "tragedy"),
    Work("A LOVER'S COMPLAINT", "a-lovers-complaint", "poem"),
    Work("LOVE'S LABOUR'S LOST", "loves-labours-lost", "comedy"),
    Work("MACBETH", "macbeth", "tragedy"),
    Work("MEASURE FOR MEASURE", "measure-for-measure", "comedy"),
    Work("THE MERCHANT OF VENICE", "merchant-of-venice", "comedy"),
    Work("THE MERRY WIVES OF WINDSOR", "merry-wives-of-windsor", "comedy"),
    Work("A MIDSUMMER NIGHT'S DREAM", "midsummer-nights-dream", "comedy"),
    Work("MUCH ADO ABOUT NOTHING", "much-ado-about-nothing", "comedy"),
    Work("OTHELLO, THE MOOR OF VENICE", "othello", "tragedy"),
    Work("THE PASSIONATE PILGRIM", "passionate-pilgrim", "poem"),
    Work("PERICLES PRINCE OF TYRE", "pericles", "comedy"),
    Work("THE PHOENIX AND THE TURTLE", "phoenix-and-the-turtle", "poem"),
    Work("THE RAPE OF LUCRECE", "rape-of-lucrece", "poem"),
    Work("THE TRAGEDY OF KING RICHARD THE SECOND", "richard-ii", "history"),
    Work("THE LIFE AND DEATH OF KING RICHARD III", "richard-iii", "history"),
    Work("ROMEO AND JULIET", "romeo-and-juliet", "tragedy"),
    Work("THE SONNETS", "sonnets", "poem"),
    Work("THE TAMING OF THE SHREW", "taming-of-the-shrew", "comedy"),
    Work("THE TEMPEST", "tempest", "comedy"),
    Work("THE LIFE OF TIMON OF ATHENS", "timon-of-athens", "tragedy"),
    Work("THE TRAGEDY OF TITUS ANDRONICUS", "titus-andronicus", "tragedy"),
    Work("THE HISTORY OF TROILUS AND CRESSIDA", "troilus-and-cressida", "tragedy"),
    Work("TWELFTH NIGHT; OR, WHAT YOU WILL", "twelfth-night", "comedy"),
    Work("THE TWO GENTLEMEN OF VERONA", "two-gentlemen-of-verona", "comedy"),
    Work("THE WINTER'S TALE", "winters-tale", "comedy"),
)


def heading_of(document: str) -> str:
    """The first non-blank line of `document`, stripped: where every work of the corpus states its title."""
    for line in document.splitlines():
        if line.strip():
            return line.strip()
    return ""


def work_of(document: str) -> Work:
    """The entry of WORKS whose heading is the document's first line; ValueError (naming `labels`) if none is."""
    heading = heading_of(document)
    for work in WORKS:
        if work.heading == heading:
            return work
    raise ValueError(
        f"labels: a document of the corpus starts with {heading[:60]!r}, which is no work of the embedded Shakespeare "
        "(data/shakespeare_works.py); genre and work labels are for the embedded corpus (paths: null)"
    )
