"""`nmt report --compare A B`: is B better than A, and where?

A and B are two run dirs (their test hypotheses, from `nmt evaluate --json`) or two hypothesis
files with `--source` and `--reference`. The page (`compare.md` and `compare.png`) has corpus
BLEU and chrF with sacreBLEU's paired bootstrap test, the sentences whose sentence chrF changed
most each way, BLEU by source length, and how many lines each trust flag fires on for each side
(from the `.flags.jsonl` files `evaluate` writes beside its hypotheses). No model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nmt import datadir
from nmt.errors import NMTError
from nmt.evaluate import flags_file
from nmt.files import write_text
from nmt.flags import CALIBRATED, CHECKS
from nmt.plots import pyplot, save_png
from nmt.report import bucket_bleu, read_run, run_names, scored_files, source_lengths, text_lines
from nmt.scores import bleu_tokenizer

SAMPLES = 1000  # bootstrap resamples
TOP = 10  # changed sentences shown each way
PAGE, FIGURE = "compare.md", "compare.png"


@dataclass
class Side:
    name: str
    hyps: list[str] | None = None
    flags: list[dict] | None = None  # per line, from HYP.flags.jsonl


@dataclass
class Inputs:
    sides: list[Side]
    srcs: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    tgt_lang: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(s.hyps is not None for s in self.sides)


def compare(a: Path, b: Path, out_dir: Path, source=None, reference=None, tgt_lang=None) -> Path:
    """Write `out_dir/compare.md` (and its figure); returns the page path."""
    if (source is None) != (reference is None):
        raise NMTError("--source and --reference go together")
    if source is not None:
        inputs = _file_inputs(Path(a), Path(b), Path(source), Path(reference))
    else:
        inputs = _run_inputs(Path(a), Path(b))
    inputs.tgt_lang = tgt_lang or inputs.tgt_lang
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [f"# {inputs.sides[1].name} against {inputs.sides[0].name}\n"]
    if inputs.notes:
        sections.append("\n".join(f"- note: {n}" for n in inputs.notes) + "\n")
    if inputs.complete:
        buckets = _buckets(inputs)
        deltas = _sentence_deltas(inputs)
        sections += [
            _significance(inputs),
            _changed(inputs, deltas),
            _bucket_table(inputs, buckets),
        ]
        if _plot(inputs, buckets, deltas, out_dir / FIGURE):
            sections.append(f"![changes]({FIGURE})\n")
    sections.append(_flag_table(inputs))
    page = out_dir / PAGE
    write_text(page, "\n".join(sections))
    return page


# ---------------------------------------------------------------------------------------------
# Inputs


def _run_inputs(a: Path, b: Path) -> Inputs:
    runs = [read_run(p, n) for p, n in zip((a, b), run_names([a, b]))]
    inputs = Inputs([Side(r.name) for r in runs])
    files = []
    for run in runs:
        found = scored_files(run)
        if found is None:
            inputs.notes.append(f"{run.name}: no test hypotheses to compare ({run.notes[-1]})")
        files.append(found)
    if None in files:
        return inputs
    (hyp_a, src, ref, data_dir), (hyp_b, src_b, ref_b, _) = files
    if text_lines(src) != text_lines(src_b) or text_lines(ref) != text_lines(ref_b):
        inputs.notes.append("the two runs were evaluated on different test sets")
        return inputs
    inputs.srcs, inputs.refs, inputs.data_dir = text_lines(src), text_lines(ref), data_dir
    meta = datadir.meta_if_any(data_dir) or datadir.Meta()
    inputs.tgt_lang = (runs[0].results or {}).get("tgt_lang") or meta.tgt_lang
    for side, hyp in zip(inputs.sides, (hyp_a, hyp_b)):
        _read_side(side, hyp, len(inputs.srcs), inputs.notes)
    return inputs


def _file_inputs(a: Path, b: Path, source: Path, reference: Path) -> Inputs:
    for p in (a, b, source, reference):
        if not p.is_file():
            raise NMTError(f"file not found: {p}")
    inputs = Inputs([Side(n) for n in run_names([a, b])], text_lines(source), text_lines(reference))
    if len(inputs.srcs) != len(inputs.refs):
        raise NMTError(f"{len(inputs.srcs)} source lines but {len(inputs.refs)} reference lines")
    for side, hyp in zip(inputs.sides, (a, b)):
        _read_side(side, hyp, len(inputs.srcs), inputs.notes)
    return inputs


def _read_side(side: Side, hyp: Path, n: int, notes: list[str]) -> None:
    hyps = text_lines(hyp)
    if len(hyps) != n:
        notes.append(f"{side.name}: {hyp} has {len(hyps)} lines for {n} source lines")
        return
    side.hyps = hyps
    flags = flags_file(hyp)
    if flags.is_file():
        rows = [json.loads(line) for line in text_lines(flags) if line.strip()]
        if len(rows) == n:
            side.flags = rows
        else:
            notes.append(f"{side.name}: {flags.name} has {len(rows)} lines for {n}: stale, unused")
    else:
        notes.append(f"{side.name}: no {flags.name} (nmt evaluate -o writes it): no flag counts")


# ---------------------------------------------------------------------------------------------
# Measures


def _significance(inputs: Inputs) -> str:
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    systems = [(s.name, s.hyps) for s in inputs.sides]
    metrics = {"BLEU": BLEU(tokenize=bleu_tokenizer(inputs.tgt_lang, inputs.refs)), "chrF": CHRF()}
    test = PairedTest(systems, metrics, [inputs.refs], test_type="bs", n_samples=SAMPLES)
    signatures, results = test()
    rows = ["## Corpus scores and paired bootstrap\n", "| system | BLEU | chrF |", "|---|---|---|"]
    for k, side in enumerate(inputs.sides):
        cells = [f"{r.score:.2f} ({r.mean:.2f} ± {r.ci:.2f})" for r in _results(results, k)]
        rows.append(f"| {side.name} | " + " | ".join(cells) + " |")
    verdict = []
    for m, (r_a, r_b) in enumerate(zip(_results(results, 0), _results(results, 1))):
        name = ("BLEU", "chrF")[m]
        direction = (
            "equal" if r_b.score == r_a.score else "better" if r_b.score > r_a.score else "worse"
        )
        significant = "significant" if r_b.p_value < 0.05 else "not significant"
        verdict.append(
            f"{inputs.sides[1].name} is {direction} on {name} by {abs(r_b.score - r_a.score):.2f} "
            f"(p = {r_b.p_value:.4f}: {significant} at 0.05)"
        )
    sig = "; ".join(f"{k}: `{v}`" for k, v in signatures.items())
    return "\n".join(rows) + f"\n\n{'; '.join(verdict)}. {SAMPLES} resamples; {sig}\n"


def _results(results: dict, k: int) -> list:
    """System k's (BLEU, chrF) results from sacreBLEU's PairedTest output."""
    return [v[k] for key, v in results.items() if key != "System"]


def _sentence_deltas(inputs: Inputs) -> list[float]:
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    a, b = (
        [chrf.sentence_score(h, [r]).score for h, r in zip(s.hyps, inputs.refs)]
        for s in inputs.sides
    )
    return [y - x for x, y in zip(a, b)]


def _changed(inputs: Inputs, deltas: list[float]) -> str:
    order = sorted(range(len(deltas)), key=lambda i: deltas[i])
    a, b = inputs.sides
    rows = ["## Sentences that changed most (sentence chrF)\n"]
    for title, idx in (("Gains", order[::-1][:TOP]), ("Losses", order[:TOP])):
        rows.append(f"### {title} of {b.name}\n")
        for i in idx:
            if (deltas[i] > 0) != (title == "Gains") or deltas[i] == 0:
                continue
            rows.append(
                f"- line {i + 1}, {deltas[i]:+.1f}: source `{inputs.srcs[i]}`  \n"
                f"  reference `{inputs.refs[i]}`  \n  {a.name} `{a.hyps[i]}`  \n"
                f"  {b.name} `{b.hyps[i]}`"
            )
        rows.append("")
    return "\n".join(rows)


def _buckets(inputs: Inputs) -> tuple[str, list[list[dict]]]:
    """BLEU by source length, in subwords of the data dir's model (words without one)."""
    unit, lengths = "words", [len(s.split()) for s in inputs.srcs]
    if inputs.data_dir is not None:
        try:
            lengths, unit = source_lengths(inputs.srcs, inputs.data_dir), "subwords"
        except (OSError, RuntimeError):
            pass
    return unit, [bucket_bleu(s.hyps, inputs.refs, lengths, inputs.tgt_lang) for s in inputs.sides]


def _bucket_table(inputs: Inputs, buckets: tuple[str, list[list[dict]]]) -> str:
    unit, (a, b) = buckets
    na, nb = (side.name for side in inputs.sides)
    rows = [
        f"## BLEU by source length ({unit})\n",
        f"| length | lines | {na} | {nb} | difference |",
    ]
    rows.append("|---|---|---|---|---|")
    for x, y in zip(a, b):
        diff = f"{y['bleu'] - x['bleu']:+.2f}" if x["bleu"] is not None else "-"
        rows.append(
            f"| {x['bucket']} | {x['sentences']} | {x['bleu'] if x['bleu'] is not None else '-'} "
            f"| {y['bleu'] if y['bleu'] is not None else '-'} | {diff} |"
        )
    return "\n".join(rows) + "\n"


def _flag_table(inputs: Inputs) -> str:
    rows = ["## Trust flags (lines each check fires on)\n"]
    if not any(s.flags for s in inputs.sides):
        return "\n".join(rows + ["No flag files: `nmt evaluate -o HYP` writes HYP.flags.jsonl.\n"])
    rows += ["| check | " + " | ".join(s.name for s in inputs.sides) + " |", "|---|---|---|"]
    for check in CHECKS:
        cells = [_flag_count(s.flags, check) for s in inputs.sides]
        rows.append(f"| {check} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _flag_count(flags: list[dict] | None, check: str) -> str:
    """Lines `check` fires on; n/a for a calibrated check of an uncalibrated model."""
    if not flags:
        return "-"
    if check in CALIBRATED and not any(f.get("calibrated") for f in flags):
        return "n/a (uncalibrated)"
    return str(sum(check in f.get("flags", []) for f in flags))


def _plot(inputs: Inputs, buckets, deltas: list[float], path: Path) -> bool:
    plt = pyplot()
    unit, (a, b) = buckets
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [x["bucket"] for x in a]
    for k, (side, rows) in enumerate(zip(inputs.sides, (a, b))):
        values = [r["bleu"] or 0.0 for r in rows]
        left.bar([i + 0.4 * k for i in range(len(names))], values, width=0.4, label=side.name)
    left.set_xticks([i + 0.2 for i in range(len(names))], names)
    left.set_xlabel(f"source length ({unit})"), left.set_ylabel("BLEU"), left.legend()
    right.hist(deltas, bins=40)
    right.set_xlabel(f"sentence chrF, {inputs.sides[1].name} - {inputs.sides[0].name}")
    right.set_ylabel("sentences")
    fig.tight_layout()
    save_png(fig, path)
    return True
