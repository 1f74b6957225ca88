"""Lexical constraints: target phrases that must appear in an output (a terminology list).

`Phrases` follows one sentence's constraints through a hypothesis token by token: for each
phrase, how much of it the output's last tokens spell (matched as in Knuth-Morris-Pratt, so an
overlapping restart is not missed), and whether it has appeared in full. Beam search
(`nmt.search`) reads the number of constraint tokens a hypothesis has produced to allocate its
beam across banks (Post & Vilar, 2018, "dynamic beam allocation"), the tokens that would advance
a constraint as extra candidates, and whether every constraint is met before it lets a
hypothesis end.

Where constraints come from: `--constraints FILE` (one line per input line, tab-separated
phrases, an empty line for none) or a glossary `--glossary TSV` (source term, tab, target term:
the target term is required wherever the source term occurs as a word). Free of torch.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from nmt.errors import NMTError
from nmt.files import read_text_lines

State = tuple[int, ...]  # per phrase: tokens matched so far (all: awaiting a word edge), or MET
MET = -1


class Phrases:
    """One sentence's constraints as token sequences (none empty; `unmet` gives their indices).

    A phrase that ends in a letter or digit of a script written with spaces is met only when the
    token after it does not glue more letters onto its last word (`glue`: the ids of pieces
    that continue a word), so that "dog" is not met by "dogs"; the end of the output is an edge.
    """

    def __init__(self, phrases: list[list[int]], glue: frozenset[int] = frozenset(), edged=None):
        self.phrases = [tuple(p) for p in phrases]
        if not all(self.phrases):
            raise ValueError("an empty constraint")
        self.glue = glue
        # per phrase: whether it must end at a word edge (default: every phrase)
        self.edged = [True] * len(self.phrases) if edged is None else edged
        self._next: dict[tuple[State, int], State] = {}

    def __bool__(self) -> bool:
        return bool(self.phrases)

    def start(self) -> State:
        return (0,) * len(self.phrases)

    def advance(self, state: State, token: int) -> State:
        """The state after the hypothesis produces `token`."""
        key = (state, token)
        if key not in self._next:
            self._next[key] = tuple(self._step(i, m, token) for i, m in enumerate(state))
        return self._next[key]

    def _step(self, i: int, m: int, token: int) -> int:
        phrase = self.phrases[i]
        if m == MET:
            return MET
        if m == len(phrase) and token not in self.glue:
            return MET  # complete, and the next token starts a new word (or ends the output)
        m = _matched(phrase, m, token)
        return MET if m == len(phrase) and not self.edged[i] else m

    def _done(self, i: int, m: int) -> bool:
        """Met, or complete and awaiting its word edge (the output may end there)."""
        return m == MET or m == len(self.phrases[i])

    def bank(self, state: State) -> int:
        """Constraint tokens produced: every met phrase in full, plus the longest partial match.
        A token shared by phrases (one a prefix of another) counts for each: this only ranks
        hypotheses, it never decides whether a phrase is met."""
        done = sum(len(p) for i, (p, m) in enumerate(zip(self.phrases, state)) if self._done(i, m))
        return done + max((m for i, m in enumerate(state) if not self._done(i, m)), default=0)

    def wanted(self, state: State) -> set[int]:
        """Tokens that advance an unmet phrase (its next token, or its first)."""
        tokens = set()
        for i, (p, m) in enumerate(zip(self.phrases, state)):
            if not self._done(i, m):
                tokens.update((p[m], p[0]))
        return tokens

    def may_end(self, state: State) -> bool:
        """Whether the output may end here: every phrase is in it."""
        return all(self._done(i, m) for i, m in enumerate(state))

    def unmet(self, state: State) -> list[int]:
        """The phrases an output ending here lacks."""
        return [i for i, m in enumerate(state) if not self._done(i, m)]


def _matched(phrase: tuple[int, ...], m: int, token: int) -> int:
    """Length of the longest prefix of `phrase` that ends the output after `token`, given that
    its last `m` tokens were `phrase[:m]`."""
    seen = (*phrase[:m], token)
    for n in range(min(len(seen), len(phrase)), 0, -1):
        if seen[len(seen) - n :] == phrase[:n]:
            return n
    return 0


# ---------------------------------------------------------------------------------------------
# Where constraints come from


def glue_ids(pieces: list[str]) -> frozenset[int]:
    """The ids of SentencePiece pieces that continue the word before them: no word-boundary
    mark, and a letter or digit of a script written with spaces first."""
    return frozenset(i for i, p in enumerate(pieces) if p and p[0] != "\u2581" and spaced(p[0]))


def read_constraints(path: Path) -> list[list[str]]:
    """A constraints file: per line, the tab-separated target phrases of that input line."""
    return [[p.strip() for p in line.split("\t") if p.strip()] for line in read_text_lines(path)]


class Glossary:
    """Source term -> target term; a line that contains the source term as a word requires the
    target term. Terms match case-sensitively; a term edge that is a letter or digit of a script
    written with spaces must be a word edge in the line ("cat" is not found in "category")."""

    def __init__(self, entries: list[tuple[str, str]]):
        self.entries = entries
        self.patterns = [re.compile(_word_pattern(src)) for src, _ in entries]

    @classmethod
    def read(cls, path: Path) -> Glossary:
        entries = []
        for n, line in enumerate(read_text_lines(path), 1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) != 2 or not all(fields):
                raise NMTError(f"{path}:{n}: a glossary line is SOURCE TERM<tab>TARGET TERM")
            entries.append((fields[0], fields[1]))
        return cls(entries)

    def targets(self, line: str) -> list[str]:
        """The target terms that `line` requires, in glossary order."""
        return [tgt for (_, tgt), pat in zip(self.entries, self.patterns) if pat.search(line)]


def _word_pattern(term: str) -> str:
    before = r"(?<!\w)" if spaced(term[0]) else ""
    after = r"(?!\w)" if spaced(term[-1]) else ""
    return before + re.escape(term) + after


def spaced(ch: str) -> bool:
    """A letter or digit of a script whose words are separated by spaces (not CJK, Thai...)."""
    return unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Nd")
