"""The translation API that both runtimes share: strings in, `Translation`s out, in input order.

`TranslatorBase` holds everything above the search: tokenizing, the length limit, blank lines,
streaming in chunks, n-best `Translation`s with pieces and attention. A runtime (torch in
`nmt.torch_translator`, CTranslate2 in `nmt.ct2`) implements `seed` and `search`;
`nmt.runtimes.open_translator(path)` picks the runtime for a checkpoint or an export dir.
Free of torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from nmt import languages
from nmt.config import Config
from nmt.constraints import Phrases, glue_ids, spaced
from nmt.errors import NMTError
from nmt.flags import Calibration, LineFacts, check
from nmt.search_options import DecodeFlags, Hypothesis, SearchOptions, mean_logprob
from nmt.tokenizer import BOS, EOS, PAD, TAG, UNK, UNK_ID, Tokenizer

WORD_BOUNDARY = "\u2581"  # SentencePiece's mark of a preceding space
STREAM_LINES = 5000  # lines read, sorted by length and translated together when streaming


@dataclass(frozen=True, eq=False)  # eq=False: never compared, and cheaper to build at start-up
class RuntimeOptions:
    """Where a translator runs: `device` cpu, cuda or cuda:N (torch), CPU `threads` (0: all)."""

    device: str = "cpu"
    threads: int = 0

    def __post_init__(self):
        kind, _, index = self.device.partition(":")
        if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
            raise NMTError(f"--device must be cpu, cuda or cuda:N, not {self.device!r}")
        if self.threads < 0:
            raise NMTError("--threads must be >= 0")


@dataclass(frozen=True)
class LineNote:
    """What a user should hear about one input line: content that cannot come through intact.
    `line` counts from 0; `kind` is one of `NOTE_KINDS`."""

    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line + 1}: {self.message}"


NOTE_KINDS = {  # what each kind of note means
    "truncated": "input truncated to the length limit",
    "uncovered": "characters outside the vocabulary (read as <unk>, usually lost)",
    "cut": "output stopped by the length limit before its end",
    "unmet": "a required phrase (constraint) missing from the output",
}


@dataclass
class Translation:
    text: str
    score: float
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: Any = None  # (len(tgt_pieces), len(src_pieces)): torch, or numpy on ct2
    # on request, every layer and head: "cross", and for the Transformer "encoder"/"decoder"
    # self-attention, each (layers, heads, rows, cols); see TranslatorBase.translate_detailed
    maps: dict[str, Any] | None = None  # torch tensors
    ended: bool = True  # False: stopped by the length limit before its end-of-sentence
    flags: dict | None = None  # trust checks (`nmt.flags.check`): what fired, and the values

    def alignment(self) -> str:
        """Word alignment `i-j` (Pharaoh format, sorted): word i of the source line as given
        links to word j of `text` (whitespace-separated, from 0) when one of word j's pieces
        attends most to one of word i's pieces. Special tokens (</s>) take no part."""
        if self.attention is None:
            return ""
        src_words = word_ids(self.src_pieces[:-1])
        tgt_words = word_ids(self.tgt_pieces[:-1], output=True)
        cols = [c for c, w in enumerate(src_words) if w is not None]
        if not cols:
            return ""
        links = set()
        for row, j in enumerate(tgt_words):
            if j is not None:
                values = self.attention[row]  # torch, numpy, or a list
                weights = list(values.tolist() if hasattr(values, "tolist") else values)
                best = max(cols, key=lambda c: weights[c])
                links.add((src_words[best], j))
        return " ".join(f"{i}-{j}" for i, j in sorted(links))


def word_ids(pieces: list[str], output: bool = False) -> list[int | None]:
    """The word (0, 1, ...) each SentencePiece piece belongs to, words being the
    whitespace-separated tokens of the text the pieces spell; None for a piece of whitespace
    alone and for special pieces (<s>, <pad>, </s>). A piece starting with the word boundary
    mark starts a word once it has text. In an `output`, <unk> is decoded as a word of its own
    (" ⁇ "); in an input it stands for the unknown text where it was. A target-language tag
    (`<2de>`) is no word either."""
    ids: list[int | None] = []
    word, boundary = -1, True
    for piece in pieces:
        if piece in (BOS, PAD, EOS) or TAG.fullmatch(piece):  # no word of the text
            ids.append(None)
            continue
        if piece.startswith(WORD_BOUNDARY):
            boundary, piece = True, piece.lstrip(WORD_BOUNDARY)
        if piece and (boundary or (output and piece == UNK)):
            word, boundary = word + 1, False
        ids.append(word if piece else None)
        boundary = boundary or (output and piece == UNK)
    return ids


@dataclass(frozen=True)
class Score:
    """A given translation's log-probability under the model (natural log, end of sentence
    included, no label smoothing), its mean per target token and the token count."""

    total: float
    mean: float
    tokens: int

    def line(self) -> str:
        return f"{self.total:.6f}\t{self.mean:.6f}\t{self.tokens}"


class TranslatorBase:
    """What every translator shares: string in, `Translation`s out, in input order, streaming.

    Subclasses set `tokenizer`, `cfg`, `max_len`, `has_attention`, `src_lang` and `tgt_lang`
    (the training data's languages, None when unknown), `calibration` (None when the model has
    none) and implement `seed(seed)`, `search(ids, opts)`: n-best `Hypothesis` lists per encoded
    sentence (ids end with EOS, none empty), in input order, and `score_ids` (forced decoding).
    """

    tokenizer: Tokenizer
    cfg: Config
    max_len: int
    has_attention: bool
    src_lang: str | None = None
    tgt_lang: str | None = None
    calibration: Calibration | None = None  # of the trust flags, from the validation split
    constrains: bool = False  # whether `search` takes constraints (lexically constrained search)
    _glue: frozenset[int] | None = None  # target pieces that continue a word (`glue_ids`)

    def seed(self, seed: int) -> None:
        """Seed the random draws of sampling."""
        raise NotImplementedError

    def search(
        self, ids: list[list[int]], opts: SearchOptions, constraints: list | None = None
    ) -> list[list[Hypothesis]]:
        """n-best hypotheses per sentence; `constraints`: a `Phrases` per sentence (where the
        runtime `constrains`)."""
        raise NotImplementedError

    @property
    def decode(self) -> SearchOptions:
        """The model's decode section: the options a search uses unless told otherwise."""
        return self.cfg.decode

    def options(self, flags: DecodeFlags = DecodeFlags()) -> SearchOptions:
        """The decode options of a request: the model's decode section under `flags`."""
        return flags.over(self.decode)

    def translate(
        self,
        sentences: list[str],
        beam: int | None = None,
        tgt_lang: str | None = None,
        **options,
    ) -> list[str]:
        """Translate strings; the best hypothesis per sentence (a warning for each `LineNote`:
        an input truncated to the model's length limit, characters the vocabulary does not
        cover, an output cut by the length limit). `options` are `SearchOptions` fields; those
        left out come from the model's decode section. `tgt_lang`: the language to write."""
        opts = self.options(DecodeFlags(beam=beam, **options))
        return [t[0].text for t in self.translate_detailed(sentences, opts, tgt_lang=tgt_lang)]

    def translate_detailed(
        self,
        sentences: list[str],
        opts: SearchOptions,
        *,
        warn: Callable[[LineNote], None] | None = None,
        maps: bool = False,
        constraints: list[list[str]] | None = None,
        tgt_lang: str | None = None,
    ) -> list[list[Translation]]:
        """n-best `Translation`s per sentence into `tgt_lang` (`target`); `warn(note)` hears
        every `LineNote` (by default a `warnings.warn`).

        `maps=True` also fills `Translation.maps` with the attention of every layer and head
        (one extra teacher-forced pass per hypothesis; needs `opts.attention` for the pieces).
        `constraints`: per sentence, target phrases that every output must contain (a phrase
        the length limit leaves no room for is a `LineNote` of kind "unmet").
        """
        warn = warn or _warn
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        ids = self.encode_sources(sentences, todo, self.target(tgt_lang), warn)
        phrases, required = None, None
        if constraints is not None:
            phrases, required = self._required(sentences, todo, constraints, opts, warn)
        hyps = self.search(ids, opts, phrases) if ids else []
        out: list[list[Translation]] = [[Translation("", 0.0, [], [])] for _ in sentences]
        for k, i in enumerate(todo):
            source = sentences[i].strip()
            out[i] = [self._translation(source, ids[k], h, opts, maps) for h in hyps[k]]
            if "cut" in out[i][0].flags["flags"]:
                message = "output stopped by the length limit before its end"
                warn(LineNote(i, "cut", f"{message} ({len(hyps[k][0].tokens)} tokens)"))
            if hyps[k][0].unmet:
                missing = _quoted([required[k][j] for j in hyps[k][0].unmet])
                warn(LineNote(i, "unmet", f"not met within the length limit: {missing}"))
        return out

    def encode_sources(self, sentences, rows, lang, warn) -> list[list[int]]:
        """The ids of `sentences[i]` for each i in `rows` (tagged for `lang`), cut to the model's
        length limit: the one encoding of translation and scoring, with a `LineNote` for each
        line truncated or holding characters the vocabulary does not cover."""
        ids = self.tokenizer.encode_src([sentences[i].strip() for i in rows], lang)
        for k, (i, seq) in enumerate(zip(rows, ids)):
            if UNK_ID in seq:
                spans = " ".join(self.tokenizer.uncovered(sentences[i].strip()))
                warn(LineNote(i, "uncovered", f"not in the model's vocabulary: {spans}"))
            if len(seq) > self.max_len:
                message = f"{len(seq)} source tokens, truncated to the model's limit of "
                warn(LineNote(i, "truncated", f"{message}{self.max_len}"))
                ids[k] = self._fit(seq)
        return ids

    def target(self, lang: str | None) -> str | None:
        """The language to write: `lang` where given (a multilingual model's tag; a bilingual
        model accepts its own target language only), else the model's one target language.
        An error names the model's languages when it has several and none is given."""
        own = self.tgt_lang
        if not self.tokenizer.tags:  # a bilingual model: nothing to ask for
            if lang and own and languages.base(lang) != languages.base(own):
                raise NMTError(f"--tgt-lang {lang}: this model translates into {own} only")
            return None
        if lang is None and own is None:
            self.tokenizer.tag_id(None)  # the error naming the model's languages
        return lang or own

    def require_constraints(self, opts: SearchOptions) -> None:
        """Refuse constrained search where it cannot run."""
        if not self.constrains:
            raise NMTError(
                "constraints need a torch checkpoint: CTranslate2 has no lexically constrained "
                "search (only target prefixes)"
            )
        if opts.sample:
            raise NMTError("constraints need a search, not sampling: leave out --sample")

    def _required(self, sentences, todo, constraints, opts, warn):
        """Each non-blank sentence's constraints as `Phrases` (the tokens the model would
        produce for them) and as text (what notes name). A phrase the target vocabulary cannot
        spell, or one on a blank line, is a note instead."""
        self.require_constraints(opts)
        if len(constraints) != len(sentences):
            raise NMTError(f"{len(constraints)} lines of constraints for {len(sentences)} lines")
        texts = [list(dict.fromkeys(p.strip() for p in c if p.strip())) for c in constraints]
        for i, c in enumerate(texts):
            if c and not sentences[i].strip():
                warn(LineNote(i, "unmet", f"a blank line stays blank: {_quoted(c)} not met"))
        if self._glue is None:
            self._glue = glue_ids(self.tokenizer.tgt_pieces(range(self.tokenizer.tgt_vocab_size)))
        phrases, required = [], []
        for i in todo:
            spelled = zip(texts[i], self.tokenizer.encode_tgt(texts[i]) if texts[i] else [])
            kept = [(t, ids) for t, ids in spelled if ids and UNK_ID not in ids]
            if len(kept) < len(texts[i]):
                lost = [t for t in texts[i] if t not in dict(kept)]
                message = f"{_quoted(lost)} cannot be spelled in the model's target vocabulary"
                warn(LineNote(i, "unmet", message))
            required.append([t for t, _ in kept])
            edged = [spaced(t[-1]) for t, _ in kept]
            phrases.append(Phrases([ids for _, ids in kept], self._glue, edged))
        return phrases, required

    def _fit(self, src_ids: list[int]) -> list[int]:
        """Source ids cut to the model's length limit, </s> kept."""
        if len(src_ids) <= self.max_len:
            return src_ids
        return src_ids[: self.max_len - 1] + src_ids[-1:]

    def _translation(
        self, source: str, src_ids: list[int], h: Hypothesis, opts: SearchOptions, maps: bool
    ) -> Translation:
        pieces = opts.attention
        text = self.tokenizer.decode_tgt(h.tokens)
        n_src, logprob = len(src_ids) - 1, mean_logprob(h, opts)
        facts = LineFacts(source, text, n_src, len(h.tokens), logprob, h.ended, opts.sample)
        return Translation(
            text,
            h.score,
            self.tokenizer.src_pieces(src_ids[:-1]) + [EOS] if pieces else [],
            self.tokenizer.tgt_pieces(h.tokens) + [EOS] if pieces else [],
            h.attention,
            self.attention_maps(src_ids, h.tokens) if maps else None,
            ended=h.ended,
            flags=check(facts, self.calibration),
        )

    def score(
        self,
        sources: list[str],
        targets: list[str],
        batch_tokens: int | None = None,
        tgt_lang: str | None = None,
        warn: Callable[[LineNote], None] | None = None,
    ) -> list[Score]:
        """Forced decoding of each (source, target) pair: how likely the model finds the given
        translation. Sources are encoded (and truncated) as for translation; a target over the
        model's length limit is an error naming its line. `batch_tokens`: default the model's
        decode section's."""
        if len(sources) != len(targets):
            raise NMTError(f"{len(sources)} sources but {len(targets)} targets")
        lang, rows = self.target(tgt_lang), range(len(sources))
        src_ids = self.encode_sources(sources, rows, lang, warn or _warn)
        tgt_ids = self.tokenizer.encode_tgt([t.strip() for t in targets])
        for i, seq in enumerate(tgt_ids):
            if len(seq) + 1 > self.max_len:
                raise NMTError(
                    f"line {i + 1}: the target has {len(seq) + 1} tokens with {EOS}, over the "
                    f"model's limit of {self.max_len}"
                )
        budget = self.decode.batch_tokens if batch_tokens is None else batch_tokens
        totals = self.score_ids(src_ids, tgt_ids, budget) if src_ids else []
        return [Score(t, t / (len(y) + 1), len(y) + 1) for t, y in zip(totals, tgt_ids)]

    def score_ids(self, src_ids, tgt_ids, batch_tokens: int) -> list[float]:
        """Total log-probability of each target (ids without BOS/EOS, EOS scored)."""
        raise NotImplementedError

    def attention_maps(self, src_ids: list[int], tokens: list[int]) -> dict[str, Any]:
        """Attention per layer and head of one source (with </s>) and its output tokens."""
        raise NMTError(
            "attention per layer and head needs a torch checkpoint (an export keeps the "
            "last layer's mean: use --attention-plot without --attention-layer/-heads)"
        )

    def translate_stream(
        self,
        lines: Iterable[str],
        opts: SearchOptions,
        *,
        chunk: int = STREAM_LINES,
        warn: Callable[[LineNote], None] | None = None,
        maps: bool = False,
        constraints_of: Callable[[int, str], list[str]] | None = None,
        tgt_lang: str | None = None,
    ) -> Iterator[list[Translation]]:
        """Translate an iterable of lines chunk by chunk (memory stays flat); yields in order.
        `constraints_of(n, line)`: the target phrases required of line n (from 0)."""
        buf: list[str] = []
        offset = 0
        warn = warn or _warn

        def flush():
            def chunk_warn(note: LineNote):
                warn(replace(note, line=offset + note.line))

            constraints = None
            if constraints_of is not None:
                constraints = [constraints_of(offset + n, line) for n, line in enumerate(buf)]
            return self.translate_detailed(
                buf, opts, warn=chunk_warn, maps=maps, constraints=constraints, tgt_lang=tgt_lang
            )

        for line in lines:
            buf.append(line.rstrip("\r\n"))
            if len(buf) >= chunk:
                yield from flush()
                offset += len(buf)
                buf = []
        if buf:
            yield from flush()


def _quoted(phrases: list[str]) -> str:
    return ", ".join(map(repr, phrases))


def _warn(note: LineNote) -> None:
    warnings.warn(str(note), stacklevel=4)
