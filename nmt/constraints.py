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

State = tuple[int, ...]  # per phrase: tokens matched so far, or MET
MET = -1


class Phrases:
    """One sentence's constraints as token sequences (none empty, no duplicates)."""

    def __init__(self, phrases: list[list[int]]):
        self.phrases = list(dict.fromkeys(tuple(p) for p in phrases if p))
        self._next: dict[tuple[State, int], State] = {}

    def __bool__(self) -> bool:
        return bool(self.phrases)

    def start(self) -> State:
        return (0,) * len(self.phrases)

    def advance(self, state: State, token: int) -> State:
        """The state after the hypothesis produces `token`."""
        key = (state, token)
        if key not in self._next:
            nxt = []
            for phrase, m in zip(self.phrases, state):
                if m != MET:
                    m = _matched(phrase, m, token)
                    m = MET if m == len(phrase) else m
                nxt.append(m)
            self._next[key] = tuple(nxt)
        return self._next[key]

    def bank(self, state: State) -> int:
        """Constraint tokens produced: every met phrase in full, plus the longest partial match."""
        met = sum(len(p) for p, m in zip(self.phrases, state) if m == MET)
        return met + max((m for m in state if m != MET), default=0)

    def wanted(self, state: State) -> set[int]:
        """Tokens that advance an unmet phrase (its next token, or its first)."""
        tokens = set()
        for p, m in zip(self.phrases, state):
            if m != MET:
                tokens.update((p[m], p[0]))
        return tokens

    def all_met(self, state: State) -> bool:
        return all(m == MET for m in state)

    def unmet(self, state: State) -> list[int]:
        return [i for i, m in enumerate(state) if m != MET]


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
    before = r"(?<!\w)" if _spaced(term[0]) else ""
    after = r"(?!\w)" if _spaced(term[-1]) else ""
    return before + re.escape(term) + after


def _spaced(ch: str) -> bool:
    """A letter or digit of a script whose words are separated by spaces (not CJK, Thai...)."""
    return unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Nd")
