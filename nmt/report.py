"""`nmt report RUN_DIR... -o DIR`: compare runs side by side in `DIR/report.md` and PNG figures.

Everything is read from what a run leaves on disk (`nmt.runlog`: metrics.jsonl, or train.log or
TensorBoard scalars for older runs, config.yaml, summary.json, and results.json with the test
hypotheses once `evaluate` has run), so no model is loaded. A run that is missing pieces (still
training, crashed, never evaluated) is shown with what it has and a note saying what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nmt import datadir, runlog
from nmt.errors import NMTError
from nmt.files import split_lines, write_text
from nmt.plots import pyplot, save_png
from nmt.scores import bleu_tokenizer

LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, None))  # source subwords, inclusive


@dataclass
class Run:
    """What one run dir holds, as far as it could be read."""

    path: Path
    name: str = ""
    backend: str = "?"
    params_m: float | None = None
    train: list[dict] = field(default_factory=list)  # step, loss, tok_s
    valid: list[dict] = field(default_factory=list)  # step, minutes, loss, ppl, bleu
    extra: dict[str, list[dict]] = field(default_factory=dict)  # other data dirs' validations
    minutes_from_stamps: bool = False  # minutes read off log times (validation included)
    config: dict | None = None  # config.yaml as read
    summary: dict | None = None
    results: dict | None = None
    buckets: list[dict] | None = None  # per LENGTH_BUCKETS: sentences, bleu
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.name == self.backend else f"{self.backend}: {self.name}"


# ---------------------------------------------------------------------------------------------
# Reading a run dir


def _read_json(run: Run, name: str) -> dict | None:
    path = run.path / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as e:
        run.notes.append(f"{name} is unreadable ({e.msg} at line {e.lineno})")
        return None
    if not isinstance(data, dict):
        run.notes.append(f"{name} is not a JSON object")
        return None
    return data


def _read_config(run: Run) -> dict | None:
    path = run.path / runlog.CONFIG
    if not path.is_file():
        run.notes.append(f"no {runlog.CONFIG}")
        return None
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")) or {}
    except yaml.YAMLError:
        run.notes.append(f"{runlog.CONFIG} names no model.backend")
        return None
    try:
        run.backend = str(cfg["model"]["backend"])
    except (KeyError, TypeError):
        run.notes.append(f"{runlog.CONFIG} names no model.backend")
    return cfg if isinstance(cfg, dict) else None


def _read_curves(run: Run) -> None:
    curves = runlog.read_curves(run.path)
    run.train, run.valid, run.notes = curves.train, curves.valid, run.notes + curves.notes
    run.extra = curves.extra
    run.params_m, run.minutes_from_stamps = curves.params_m, curves.minutes_from_stamps
    if run.backend == "?" and curves.backend:
        run.backend = curves.backend


def text_lines(path: Path) -> list[str]:
    return split_lines(path.read_text(encoding="utf-8", errors="replace"))


def scored_files(run: Run) -> tuple[Path, Path, Path, Path] | None:
    """(hypotheses, source, reference, data dir) of the scored test set, when all exist."""
    res = run.results or {}
    hyp = Path(res.get("hypotheses") or run.path / runlog.TEST_HYP)
    if not hyp.is_file():
        run.notes.append("no test hypotheses saved: no BLEU by source length")
        return None
    data_dir = Path(res["data_dir"]) if res.get("data_dir") else None
    if data_dir is None and run.config is not None:
        try:
            data_dir = Path(run.config["data"]["dir"])
        except (KeyError, TypeError):
            pass
    src, ref = datadir.raw_text(data_dir or Path(), res.get("split", "test"))
    src = Path(res["source"]) if res.get("source") else src
    ref = Path(res["reference"]) if res.get("reference") else ref
    if data_dir is None or not src.is_file() or not ref.is_file():
        run.notes.append("the test source/reference files are gone: no BLEU by source length")
        return None
    return hyp, src, ref, data_dir


def source_lengths(sentences: list[str], data_dir: Path) -> list[int]:
    """Source length of each sentence in subwords of the data dir's SentencePiece model."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(datadir.src_spm_path(data_dir)))
    return [len(ids) for ids in sp.encode(sentences)]


def bucket_bleu(hyps: list[str], refs: list[str], lengths: list[int], tgt_lang: str | None):
    """sacreBLEU per source-length bucket: [{bucket, sentences, bleu}] in LENGTH_BUCKETS order."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=bleu_tokenizer(tgt_lang, refs))
    out = []
    for lo, hi in LENGTH_BUCKETS:
        idx = [i for i, n in enumerate(lengths) if n >= lo and (hi is None or n <= hi)]
        bleu = None
        if idx:  # an empty bucket has no score
            bleu = round(
                metric.corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score, 2
            )
        name = f"{lo}-{hi}" if hi is not None else f"{lo}+"
        out.append({"bucket": name, "sentences": len(idx), "bleu": bleu})
    return out


def _read_buckets(run: Run) -> None:
    files = scored_files(run)
    if files is None:
        return
    hyp, src, ref, data_dir = files
    hyps, srcs, refs = text_lines(hyp), text_lines(src), text_lines(ref)
    if not len(hyps) == len(srcs) == len(refs):
        run.notes.append(
            f"{hyp.name} has {len(hyps)} lines for {len(srcs)} source lines: no BLEU by length"
        )
        return
    meta = datadir.meta_if_any(data_dir) or datadir.Meta()
    # the language evaluate scored with, else the data's
    tgt_lang = (run.results or {}).get("tgt_lang") or meta.tgt_lang
    try:
        lengths = source_lengths(srcs, data_dir)
    except (OSError, RuntimeError) as e:
        run.notes.append(f"no SentencePiece model in {data_dir} ({str(e)[:60]})")
        return
    run.buckets = bucket_bleu(hyps, refs, lengths, tgt_lang)


def read_run(path: Path, name: str | None = None) -> Run:
    """Everything `report` shows about one run dir; what is missing becomes a note."""
    path = Path(path)
    if not path.is_dir():
        raise NMTError(f"run dir not found: {path}")
    run = Run(path, name or path.name)
    run.config = _read_config(run)
    _read_curves(run)
    if run.minutes_from_stamps and run.valid:
        run.notes.append("minutes read off log times (validation time included)")
    run.summary = _read_json(run, runlog.SUMMARY)
    if run.summary is None and (runlog.has_log(path) or run.valid):
        run.notes.append(f"no {runlog.SUMMARY}: still training, or stopped before the end")
    run.results = _read_json(run, runlog.RESULTS)
    if not (path / runlog.RESULTS).is_file():
        run.notes.append(f"not evaluated on the test set (no {runlog.RESULTS})")
    if run.results is not None:
        _read_buckets(run)
    return run


def run_names(paths: list[Path]) -> list[str]:
    """Run names: the dir name, or parent/name where two dirs share a name."""
    names = [Path(p).resolve().name for p in paths]
    return [
        f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for p, n in zip(paths, names)
    ]


# ---------------------------------------------------------------------------------------------
# Figures and the page


def plot_curves(runs: list[Run], path: Path) -> bool:
    """Validation BLEU and loss against training minutes and against steps; False if no data."""
    shown = [r for r in runs if r.valid]
    if not shown:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for (row, metric), (col, x) in (
        ((0, "bleu"), (0, "minutes")),
        ((0, "bleu"), (1, "step")),
        ((1, "loss"), (0, "minutes")),
        ((1, "loss"), (1, "step")),
    ):
        ax = axes[row][col]
        for r in shown:
            pts, color = [(v[x], v[metric]) for v in r.valid if metric in v], None
            if pts:
                color = ax.plot(*zip(*pts), marker=".", label=r.label)[0].get_color()
            # each pair of a multilingual run, and train.extra_valid: in the run's colour
            for j, (name, rows) in enumerate(r.extra.items()):
                pts = [(v[x], v[metric]) for v in rows if metric in v and x in v]
                style = ("--", ":", "-.")[j % 3]
                if pts:
                    ax.plot(*zip(*pts), style, marker=".", color=color, label=f"{r.label}: {name}")
        ax.set_xlabel("training minutes" if x == "minutes" else "steps")
        ax.set_ylabel(f"validation {'BLEU' if metric == 'bleu' else 'loss'}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_throughput(runs: list[Run], path: Path) -> bool:
    """Training target tokens per second against steps, one line per run."""
    shown = [r for r in runs if any(t.get("tok_s") for t in r.train)]
    if not shown:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in shown:
        pts = [(t["step"], t["tok_s"]) for t in r.train if t.get("tok_s") and t["step"] > 1]
        ax.plot(*zip(*pts) if pts else ([], []), label=r.label)
    ax.set_xlabel("steps")
    ax.set_ylabel("training target tokens/s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_length_bleu(runs: list[Run], path: Path) -> bool:
    """Test BLEU per source-length bucket: one bar group per bucket, one bar per run."""
    shown = [r for r in runs if r.buckets]
    if not shown:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(shown)
    for k, r in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(LENGTH_BUCKETS))]
        ax.bar(xs, [b["bleu"] or 0.0 for b in r.buckets], width, label=r.label)
    counts = shown[0].buckets
    ax.set_xticks(range(len(counts)), [f"{b['bucket']}\n({b['sentences']} sent.)" for b in counts])
    ax.set_xlabel("source length (subwords)")
    ax.set_ylabel("test BLEU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    return True


def _fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _table_row(r: Run) -> str:
    s, res = r.summary or {}, r.results or {}
    seen = [row["step"] for row in r.train + r.valid]
    steps = s.get("steps", max(seen) if seen else None)
    minutes = s["train_seconds"] / 60 if "train_seconds" in s else None
    if minutes is None and r.valid:
        minutes = r.valid[-1]["minutes"]
    tok = sorted(t["tok_s"] for t in r.train if t.get("tok_s") and t["step"] > 1)
    bleus = [v["bleu"] for v in r.valid if "bleu" in v]
    cells = [
        r.name,
        r.backend,
        _fmt(r.params_m, ".2f") + ("M" if r.params_m is not None else ""),
        _fmt(steps, "d"),
        _fmt(minutes),
        _fmt(tok[len(tok) // 2] if tok else None, ".0f"),
        _fmt(max(bleus) if bleus else None, ".2f"),
        _fmt(res.get("bleu"), ".2f"),
        _fmt(res.get("chrf"), ".2f"),
        _fmt(res.get("sents_per_s")),
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(runs: list[Run], figures: dict[str, str]) -> str:
    """The report page: the table, signatures, figures, length buckets and notes."""
    head = (
        "| run | backend | parameters | steps | minutes | train tok/s | best valid BLEU "
        "| test BLEU | test chrF | decoding sent/s |"
    )
    lines = ["# Run comparison", "", head, "|" + "---|" * 10]
    lines += [_table_row(r) for r in runs]
    lines += [
        "",
        "Minutes: training time without validation. Train tok/s: median target tokens per "
        "second. Best valid BLEU: greedy, on the validation subset used in training. Test "
        "scores: `nmt evaluate` (sacreBLEU):",
        "",
    ]
    lines += [
        f"- {r.name}: `{r.results['bleu_signature']}`, `{r.results.get('chrf_signature', '')}`"
        + (f" (beam {r.results['beam']})" if "beam" in r.results else "")
        for r in runs
        if r.results and "bleu_signature" in r.results
    ]
    for key, title in (
        ("curves", "Validation curves"),
        ("throughput", "Training throughput"),
        ("length", "Test BLEU by source length"),
    ):
        if key in figures:
            lines += ["", f"## {title}", "", f"![{title}]({figures[key]})"]
    lines += _bucket_table(runs)
    noted = [r for r in runs if r.notes]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- {r.name}: " + "; ".join(r.notes) for r in noted]
    return "\n".join(lines) + "\n"


def _bucket_table(runs: list[Run]) -> list[str]:
    shown = [r for r in runs if r.buckets]
    if not shown:
        return []
    names = [f"{b['bucket']} ({b['sentences']})" for b in shown[0].buckets]
    out = ["", "| run | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for r in shown:
        out.append(f"| {r.name} | " + " | ".join(_fmt(b["bleu"], ".2f") for b in r.buckets) + " |")
    out += ["", "Columns: source length in subwords (test sentences in the bucket)."]
    return out


def write_report(run_dirs: list[Path], out_dir: Path) -> Path:
    """Read the runs and write `out_dir/report.md` with its PNG figures; returns the page path."""
    if not run_dirs:
        raise NMTError("give at least one run dir")
    runs = [read_run(Path(p), n) for p, n in zip(run_dirs, run_names(run_dirs))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for key, name, plot in (
        ("curves", "curves.png", plot_curves),
        ("throughput", "throughput.png", plot_throughput),
        ("length", "bleu_by_length.png", plot_length_bleu),
    ):
        if plot(runs, out_dir / name):
            figures[key] = name
    page = out_dir / "report.md"
    write_text(page, render_markdown(runs, figures))
    return page
