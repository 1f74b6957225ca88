"""Honest scores: sacreBLEU's BLEU, chrF and TER with their signatures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nmt.config import BATCH_TOKENS, BEAM, LENGTH_PENALTY
from nmt.errors import NMTError
from nmt.files import read_text_lines, write_text

TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


def bleu_tokenizer(tgt_lang: str | None) -> str:
    """sacreBLEU's tokenizer for the target language (13a unless it needs word segmentation).

    ja/ko need MeCab, an optional extra of sacrebleu; without it BLEU falls back to characters,
    which the signature shows (tok:char) and a line on stderr explains."""
    name = TOKENIZERS.get((tgt_lang or "").split("_")[0].lower(), "13a")
    if name.endswith("mecab"):
        from sacrebleu.metrics import BLEU

        try:
            BLEU(tokenize=name)  # sacrebleu looks for MeCab only when the tokenizer is built
        except (ImportError, RuntimeError):
            print(
                f"nmt: BLEU for {tgt_lang} uses character tokenization (tok:char), not {name}: "
                f"MeCab is not installed (pip install 'sacrebleu[{name[:2]}]')",
                file=sys.stderr,
            )
            return "char"
    return name


def score(hyps: list[str], refs: list[str], tgt_lang: str | None = None) -> dict:
    """BLEU, chrF and TER of `hyps` against one reference each."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if len(hyps) != len(refs):
        raise NMTError(f"{len(hyps)} hypotheses but {len(refs)} references")
    tok = bleu_tokenizer(tgt_lang)
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


def evaluate(
    checkpoint: Path | None = None,
    data_dir: Path | None = None,
    split: str = "test",
    source: Path | None = None,
    reference: Path | None = None,
    hypothesis: Path | None = None,
    tgt_lang: str | None = None,
    beam: int = BEAM,
    alpha: float = LENGTH_PENALTY,
    batch_tokens: int = BATCH_TOKENS,
    output: Path | None = None,
    json_out: Path | None = None,
    device: str = "cpu",
    threads: int = 0,
) -> dict:
    """Translate a split (or source file) with a checkpoint, or take a hypothesis file, and score it."""
    import time

    result: dict = {}
    if hypothesis is not None:
        if reference is None:
            raise NMTError("--hypothesis needs --reference")
        hyps, refs = read_text_lines(hypothesis), read_text_lines(reference)
    else:
        if checkpoint is None:
            raise NMTError("give --checkpoint (to translate) or --hypothesis (to score a file)")
        from nmt.search_options import SearchOptions
        from nmt.translate import Translator

        translator = Translator.load(checkpoint, device, threads)
        if source is not None:
            if reference is None:
                raise NMTError("--source needs --reference")
            srcs, refs = read_text_lines(source), read_text_lines(reference)
        else:
            if split not in ("valid", "test"):
                raise NMTError(f"--split must be valid or test, not {split!r}")
            data_dir = data_dir or translator.cfg.data.dir  # the data dir it was trained on
            if not (Path(data_dir) / f"{split}.src").is_file():
                raise NMTError(
                    f"no {split} split in data dir {data_dir}: give --data or --source/--reference"
                )
            source, reference = Path(data_dir) / f"{split}.src", Path(data_dir) / f"{split}.tgt"
            srcs, refs = read_text_lines(source), read_text_lines(reference)
            result.update(split=split, data_dir=str(Path(data_dir).resolve()))
            from nmt.data import read_meta

            tgt_lang = tgt_lang or read_meta(data_dir)["tgt_lang"]
        result.update(source=str(Path(source).resolve()), reference=str(Path(reference).resolve()))
        if len(srcs) != len(refs):
            raise NMTError(f"{len(srcs)} source lines but {len(refs)} reference lines")
        t0 = time.perf_counter()
        results = translator.translate_detailed(
            srcs, SearchOptions(beam=beam, alpha=alpha), batch_tokens
        )
        seconds = time.perf_counter() - t0
        hyps = [r[0].text for r in results]
        result.update(
            beam=beam, seconds=round(seconds, 2), sents_per_s=round(len(srcs) / seconds, 1)
        )
        if output is None and json_out is not None:  # keep them for `nmt report`
            output = Path(json_out).with_suffix(".hyp")
        if output is not None:
            write_text(Path(output), "".join(h + "\n" for h in hyps))
            result["hypotheses"] = str(Path(output).resolve())
    result.update(score(hyps, refs, tgt_lang))
    if json_out is not None:
        write_text(Path(json_out), json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    rows = [f"{'metric':<6} {'score':>7}  signature"]
    for m in ("bleu", "chrf", "ter"):
        rows.append(f"{m.upper():<6} {result[m]:>7.2f}  {result[f'{m}_signature']}")
    extra = f"{result['sentences']} sentences"
    if "seconds" in result:
        extra += (
            f", beam {result['beam']}, {result['seconds']} s ({result['sents_per_s']} sentences/s)"
        )
    return "\n".join(rows + [extra])
