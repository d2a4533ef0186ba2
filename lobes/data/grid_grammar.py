"""A GRID-like sentence grammar for the synthetic corpora.

The GRID corpus (Cooke et al., 2006) has six-word commands such as
"bin blue at f two now": command, colour, preposition, letter, digit and
adverb. This module draws such sentences from a seeded generator so every
synthetic utterance has a known transcript.
"""

import numpy as np

COMMANDS = ("bin", "lay", "place", "set")
COLOURS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple("abcdefghijklmnopqrstuvxyz")  # GRID has no "w"
DIGITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine",
)  # fmt: skip
ADVERBS = ("again", "now", "please", "soon")

_SLOTS = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)


def grid_sentence(rng):
    """Draw one GRID-like sentence.

    Arguments
    ---------
    rng : numpy.random.Generator
        The generator to draw from.

    Returns
    -------
    str
        Six lower-case words separated by spaces.

    Example
    -------
    >>> sentence = grid_sentence(np.random.default_rng(0))
    >>> len(sentence.split())
    6
    >>> sentence.split()[0] in COMMANDS
    True
    """
    return " ".join(str(slot[rng.integers(len(slot))]) for slot in _SLOTS)


def grid_text(rng, num_sentences=1):
    """Draw ``num_sentences`` GRID sentences joined into one utterance text.

    Example
    -------
    >>> text = grid_text(np.random.default_rng(1), 2)
    >>> len(text.split())
    12
    """
    return " ".join(grid_sentence(rng) for _ in range(num_sentences))


class GridGrammar:
    """A seeded source of GRID-like sentences.

    Arguments
    ---------
    seed : int
        Seed of the generator; the same seed gives the same sentences.

    Example
    -------
    >>> grammar = GridGrammar(seed=3)
    >>> first = [grammar.sentence() for _ in range(3)]
    >>> first == [GridGrammar(seed=3).sentence() for _ in range(1)] + first[1:]
    True
    >>> len(set(first))
    3
    """

    def __init__(self, seed=0):
        self.rng = np.random.default_rng([seed, 4417])

    def sentence(self):
        """Return the next sentence."""
        return grid_sentence(self.rng)

    def text(self, num_sentences=1):
        """Return the next ``num_sentences`` sentences as one text."""
        return grid_text(self.rng, num_sentences)


def to_transcript(text):
    """Return ``text`` as written in a VCTK-style transcript file.

    Example
    -------
    >>> to_transcript("bin blue at f two now")
    'Bin blue at F two now.'
    """
    words = [w.upper() if len(w) == 1 else w for w in text.split()]
    sentence = " ".join(words)
    return sentence[:1].upper() + sentence[1:] + "."
