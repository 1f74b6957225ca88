"""Honest scores: sacreBLEU's BLEU, chrF and TER with their signatures, tokenized for the
target language. One scorer for validation during training, `evaluate` and `report`."""

from __future__ import annotations

import sys

from nmt import languages
from nmt.errors import NMTError

TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}  # by `languages.base`; else 13a
_WARNED: set[str] = set()  # each warning once per process (validation scores many times)


def _warn(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"nmt: {message}", file=sys.stderr)


def bleu_tokenizer(tgt_lang: str | None, refs: list[str] | None = None) -> str:
    """sacreBLEU's tokenizer for the target language (13a unless it needs word segmentation).

    Without a CJK language, references that look Chinese, Japanese or Korean get a warning:
    13a would score their unsegmented lines as single words. ja/ko need MeCab, an optional
    extra of sacrebleu; without it BLEU falls back to characters, which the signature shows
    (tok:char) and a line on stderr explains."""
    name = TOKENIZERS.get(languages.base(tgt_lang) or "", "13a")
    if name == "13a" and refs and languages.looks_cjk(refs):
        given = f"is {tgt_lang!r}" if tgt_lang else "unknown"
        _warn(
            f"the references look Chinese, Japanese or Korean but the target language {given}: "
            "BLEU uses the 13a tokenizer, which scores unsegmented text far too low; give the "
            "language (evaluate --tgt-lang zh, or preprocess --tgt zh for the data dir)"
        )
    if name.endswith("mecab"):
        from sacrebleu.metrics import BLEU

        try:
            BLEU(tokenize=name)  # sacrebleu looks for MeCab only when the tokenizer is built
        except (ImportError, RuntimeError):
            _warn(
                f"BLEU for {tgt_lang} uses character tokenization (tok:char), not {name}: "
                f"MeCab is not installed (pip install 'sacrebleu[{name[:2]}]')"
            )
            return "char"
    return name


def bleu(hyps: list[str], refs: list[str], tgt_lang: str | None) -> float:
    """Corpus BLEU of `hyps` against one reference each."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=bleu_tokenizer(tgt_lang, refs)).corpus_score(hyps, [refs]).score


def score(hyps: list[str], refs: list[str], tgt_lang: str | None = None) -> dict:
    """BLEU, chrF and TER of `hyps` against one reference each, with their signatures."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if len(hyps) != len(refs):
        raise NMTError(f"{len(hyps)} hypotheses but {len(refs)} references")
    tok = bleu_tokenizer(tgt_lang, refs)
    out = {"sentences": len(hyps)}
    for name, metric in (
        ("bleu", BLEU(tokenize=tok)),
        ("chrf", CHRF()),
        ("ter", TER(asian_support=tok != "13a")),
    ):
        s = metric.corpus_score(hyps, [refs])
        out[name] = round(s.score, 2)
        out[f"{name}_signature"] = str(metric.get_signature())
    return out
