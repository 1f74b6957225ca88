"""Honest scores: sacreBLEU's BLEU, chrF and TER with their signatures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from nmt import datadir, languages
from nmt.errors import NMTError
from nmt.files import one_line, read_text_lines, write_text
from nmt.flags import json_line, summary
from nmt.runtimes import open_translator
from nmt.scores import bleu, score
from nmt.search_options import DecodeFlags, SearchOptions
from nmt.translator import NOTE_KINDS, LineNote, RuntimeOptions


@dataclass(frozen=True)
class EvalInputs:
    """What to score: a checkpoint's translations of a data dir split (default: the test split of
    the data dir it was trained on) or of `source`, or an existing `hypothesis` file; against
    `reference` (a split's own by default)."""

    checkpoint: Path | list[Path] | None = None  # a list: an ensemble
    data_dir: Path | None = None
    split: str = "test"
    source: Path | None = None
    reference: Path | None = None
    hypothesis: Path | None = None
    # the language written (default: the data dir's target, else the model's): what a
    # multilingual model is asked to write, and so the BLEU tokenizer
    tgt_lang: str | None = None

    def __post_init__(self):
        if self.hypothesis is not None:
            if self.reference is None:
                raise NMTError("--hypothesis needs --reference")
            if self.checkpoint is not None or self.source is not None:
                raise NMTError(
                    "--hypothesis scores a file: -c/--checkpoint and --source do not apply"
                )
        elif self.checkpoint is None:
            raise NMTError("give --checkpoint (to translate) or --hypothesis (to score a file)")
        elif self.source is not None and self.reference is None:
            raise NMTError("--source needs --reference")
        elif self.source is not None and (self.data_dir is not None or self.split != "test"):
            raise NMTError("--source/--reference replace a data dir split: leave out -d/--split")
        elif self.source is None and self.split not in ("valid", "test"):
            raise NMTError(f"--split must be valid or test, not {self.split!r}")


@dataclass(frozen=True)
class EvalOutputs:
    """Where to keep the translations (`output`) and the scores as JSON (`json_out`; the
    translations then go beside it, `.hyp`, for `nmt report`)."""

    output: Path | None = None
    json_out: Path | None = None


def evaluate(
    inputs: EvalInputs,
    flags: DecodeFlags = DecodeFlags(),
    runtime: RuntimeOptions = RuntimeOptions(),
    outputs: EvalOutputs = EvalOutputs(),
) -> dict:
    """Translate a split (or source file) with a checkpoint (its decode section under `flags`),
    or take a hypothesis file; score it."""
    result: dict = {}
    tgt_lang = inputs.tgt_lang
    if inputs.hypothesis is not None:
        if flags != DecodeFlags() or outputs.output is not None:
            raise NMTError("--hypothesis scores a file: decoding flags and -o do not apply")
        hyps, refs = read_text_lines(inputs.hypothesis), read_text_lines(inputs.reference)
    else:
        if flags.n_best is not None and flags.n_best > 1:
            raise NMTError("evaluate scores the best hypothesis of each line: leave out --n-best")
        translator = open_translator(inputs.checkpoint, runtime)
        decode = replace(translator.options(flags), n_best=1)
        result["checkpoint"] = _resolved(inputs.checkpoint)
        translator.seed(decode.seed)
        source, reference = inputs.source, inputs.reference
        if source is None:
            data_dir = inputs.data_dir or translator.cfg.data.dir  # the data dir it was trained on
            source, reference = datadir.raw_text(data_dir, inputs.split)
            if not source.is_file():
                raise NMTError(
                    f"no {inputs.split} split in data dir {data_dir}: give --data or "
                    "--source/--reference"
                )
            result.update(split=inputs.split, data_dir=str(Path(data_dir).resolve()))
            meta = datadir.read_meta(data_dir)
            if datadir.pair_rows(meta, inputs.split):
                return _evaluate_pairs(translator, meta, inputs, decode, outputs, result)
            _check_languages(translator, meta, data_dir)
            tgt_lang = tgt_lang or meta.tgt_lang
        tgt_lang = tgt_lang or translator.tgt_lang  # what the model was trained to write
        result["tgt_lang"] = tgt_lang
        srcs, refs = read_text_lines(source), read_text_lines(reference)
        result.update(source=str(Path(source).resolve()), reference=str(Path(reference).resolve()))
        if len(srcs) != len(refs):
            raise NMTError(f"{len(srcs)} source lines but {len(refs)} reference lines")
        # a multilingual model is asked for the language; a bilingual one writes its own
        asked = tgt_lang if translator.tokenizer.tags else None
        best = _translate(translator, srcs, decode, result, asked)
        hyps = [t.text for t in best]
        trust = [t.flags for t in best]
        result["trust_flags"] = summary(trust, hyps, refs, lambda h, r: bleu(h, r, tgt_lang))
        _write_outputs(outputs, hyps, trust, result)
    result.update(score(hyps, refs, tgt_lang))
    if outputs.json_out is not None:
        write_text(Path(outputs.json_out), json.dumps(result, indent=2) + "\n")
    return result


def _evaluate_pairs(translator, meta, inputs: EvalInputs, decode, outputs, result) -> dict:
    """A multilingual data dir's split, pair by pair (those into `inputs.tgt_lang` where it is
    given), each decoded with its target's tag and scored for its target language; the mean
    BLEU beside them."""
    rows = datadir.pair_rows(meta, inputs.split)
    names = datadir.pair_names(meta)
    chosen = [n for n in rows if inputs.tgt_lang in (None, names[n][1])]
    if not chosen:
        targets = ", ".join(sorted({t for _, t in names.values()}))
        raise NMTError(f"--tgt-lang {inputs.tgt_lang}: the data dir's targets are {targets}")
    source, reference = datadir.raw_text(result["data_dir"], inputs.split)
    srcs, refs = read_text_lines(source), read_text_lines(reference)
    result["pairs"] = {}
    hyps_all = []
    for name in chosen:
        (start, end), lang = rows[name], names[name][1]
        one = {"tgt_lang": lang}
        best = _translate(translator, srcs[start:end], decode, one, lang)
        hyps = [t.text for t in best]
        hyps_all += hyps
        one.update(score(hyps, refs[start:end], lang))
        result["pairs"][name] = one
    result["bleu_mean"] = sum(r["bleu"] for r in result["pairs"].values()) / len(chosen)
    if outputs.output is not None:  # the chosen pairs' translations, one after another
        write_text(Path(outputs.output), "".join(one_line(h) + "\n" for h in hyps_all))
    if outputs.json_out is not None:
        write_text(Path(outputs.json_out), json.dumps(result, indent=2) + "\n")
    return result


def _resolved(checkpoint: Path | list[Path]) -> str | list[str]:
    if isinstance(checkpoint, list | tuple):
        return [str(Path(p).resolve()) for p in checkpoint]
    return str(Path(checkpoint).resolve())


def _write_outputs(outputs: EvalOutputs, hyps: list[str], flags: list, result: dict) -> None:
    """The translations (`-o`, or beside `--json` for `nmt report`) and their trust checks
    (HYP.flags.jsonl beside them)."""
    output = outputs.output
    if output is None and outputs.json_out is not None:  # keep them for `nmt report`
        output = Path(outputs.json_out).with_suffix(".hyp")
    if output is None:
        return
    write_text(Path(output), "".join(one_line(h) + "\n" for h in hyps))
    flags_path = flags_file(Path(output))
    write_text(flags_path, "".join(json_line(n, f) + "\n" for n, f in enumerate(flags, 1)))
    result.update(hypotheses=str(Path(output).resolve()), flags=str(flags_path.resolve()))


def flags_file(hyp: Path) -> Path:
    """Where the trust checks of a hypothesis file go: HYP.flags.jsonl."""
    return hyp.with_name(hyp.name + ".flags.jsonl")


def _check_languages(translator, meta: datadir.Meta, data_dir) -> None:
    """A data dir of another language pair than the model's is refused before any work."""
    model = (translator.src_lang, translator.tgt_lang)
    data = (meta.src_lang, meta.tgt_lang)
    if (
        all(model)
        and all(data)
        and tuple(map(languages.base, model)) != tuple(map(languages.base, data))
    ):
        raise NMTError(
            f"data dir {data_dir} is {data[0]}->{data[1]}, the model translates "
            f"{model[0]}->{model[1]}"
        )


def _translate(translator, srcs: list[str], decode: SearchOptions, result: dict, tgt_lang) -> list:
    """The best `Translation` of each line into `tgt_lang`, timed into `result`, with how many
    lines each kind of `LineNote` was heard for."""
    notes = dict.fromkeys(NOTE_KINDS, 0)

    def count(note: LineNote) -> None:
        notes[note.kind] += 1

    t0 = time.perf_counter()
    found = translator.translate_detailed(srcs, decode, warn=count, tgt_lang=tgt_lang)
    best = [r[0] for r in found]
    seconds = time.perf_counter() - t0
    result.update(
        beam=decode.beam, seconds=round(seconds, 2), sents_per_s=round(len(srcs) / seconds, 1)
    )
    result["lines_with"] = notes
    return best


def format_table(result: dict) -> str:
    if "pairs" in result:  # a multilingual data dir: a table per pair, then the mean
        tables = [f"{name}:\n{format_table(r)}" for name, r in result["pairs"].items()]
        return "\n\n".join(
            tables + [f"mean BLEU over {len(tables)} pairs: {result['bleu_mean']:.2f}"]
        )
    rows = [f"{'metric':<6} {'score':>7}  signature"]
    for m in ("bleu", "chrf", "ter"):
        rows.append(f"{m.upper():<6} {result[m]:>7.2f}  {result[f'{m}_signature']}")
    extra = f"{result['sentences']} sentences"
    if "seconds" in result:
        extra += (
            f", beam {result['beam']}, {result['seconds']} s ({result['sents_per_s']} sentences/s)"
        )
    rows.append(extra)
    trust = result.get("trust_flags")
    if trust:
        rows.append(_trust_row(trust))
    notes = result.get("lines_with", {})
    if any(notes.values()):
        what = "; ".join(f"{text}: {notes[k]}" for k, text in NOTE_KINDS.items() if notes.get(k))
        rows.append(f"lines with {what}")
    return "\n".join(rows)


def _trust_row(trust: dict) -> str:
    fired = ", ".join(f"{c} {n}" for c, n in trust["lines"].items() if n) or "none"
    calibrated = "" if trust["calibrated"] else " (uncalibrated model: two checks skipped)"
    row = f"trust flags{calibrated}: {fired}; {trust['flagged']} lines flagged"
    if trust["flagged"] and trust["bleu_unflagged"] is not None:
        row += (
            f", BLEU {trust['bleu_flagged']:.2f} flagged vs {trust['bleu_unflagged']:.2f} unflagged"
        )
    return row
