"""`nmt report RUN_DIR... -o DIR`: compare runs side by side in `DIR/report.md` and PNG figures.

Everything is read from what a run leaves on disk (train.log or TensorBoard scalars,
config.yaml, summary.json, and results.json with the test hypotheses once `evaluate` has
run), so no model is loaded. A run that is missing pieces (still training, crashed, never
evaluated) is shown with what it has and a note saying what is missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nmt.errors import NMTError
from nmt.files import atomic_write, write_text

LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, None))  # source subwords, inclusive
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")
_PARAMS = re.compile(r"^(\w+): ([\d.]+)M parameters")
_TRAIN = re.compile(r"^step (\d+) epoch \d+ loss ([\d.]+) lr \S+ ([\d.]+) tgt tok/s")
_VALID = re.compile(r"^validation at step (\d+): (.*?)(?: \(([\d.]+) train min\))?$")


@dataclass
class Run:
    """What one run dir holds, as far as it could be read."""

    path: Path
    name: str = ""
    backend: str = "?"
    params_m: float | None = None
    train: list[dict] = field(default_factory=list)  # step, loss, tok_s
    valid: list[dict] = field(default_factory=list)  # step, minutes, loss, ppl, bleu
    minutes_from_stamps: bool = False  # minutes read off log times (validation included)
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


def _read_backend(run: Run) -> None:
    path = run.path / "config.yaml"
    if not path.is_file():
        run.notes.append("no config.yaml")
        return
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")) or {}
        run.backend = str(cfg["model"]["backend"])
    except (yaml.YAMLError, KeyError, TypeError):
        run.notes.append("config.yaml names no model.backend")


def _number_pairs(text: str) -> dict:
    words = text.split()
    out = {}
    for key, value in zip(words[::2], words[1::2]):
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def parse_train_log(run: Run, text: str) -> None:
    """Training and validation rows from train.log (appended to across resumes)."""
    base, last, session_start = 0.0, 0.0, None
    for line in text.splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        msg = m.group(2)
        if (p := _PARAMS.match(msg)) is not None:  # first line of a (resumed) session
            run.backend = run.backend if run.backend != "?" else p.group(1)
            run.params_m = float(p.group(2))
            base, session_start = last, t
            continue
        session_start = t if session_start is None else session_start
        last = base + (t - session_start) / 60
        if (r := _TRAIN.match(msg)) is not None:
            run.train.append({"step": int(r.group(1)), "loss": float(r.group(2))})
            run.train[-1]["tok_s"] = float(r.group(3))
        elif (v := _VALID.match(msg)) is not None:
            row = {"step": int(v.group(1)), **_number_pairs(v.group(2))}
            if v.group(3) is None:
                run.minutes_from_stamps = True
            row["minutes"] = float(v.group(3)) if v.group(3) is not None else last
            run.valid.append(row)


def read_tensorboard(run: Run) -> bool:
    """Training and validation rows from TensorBoard event files; False when there are none."""
    tb = run.path / "tensorboard"
    if not tb.is_dir() or not any(tb.iterdir()):
        return False
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        run.notes.append("tensorboard is not installed: its scalars were not read")
        return False
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))

    def series(tag):
        return {e.step: (e.value, e.wall_time) for e in acc.Scalars(tag)} if tag in tags else {}

    loss, tok = series("train/loss"), series("train/tgt_tok_s")
    run.train = [
        {"step": s, "loss": v, "tok_s": tok.get(s, (None,))[0]} for s, (v, _) in loss.items()
    ]
    valid = {k: series(f"valid/{k}") for k in ("loss", "ppl", "bleu")}
    start = min((w for _, w in loss.values()), default=None)
    for s, (v, wall) in sorted(valid["loss"].items()):
        row = {"step": s, "loss": v, "minutes": (wall - (start or wall)) / 60}
        row.update({k: valid[k][s][0] for k in ("ppl", "bleu") if s in valid[k]})
        run.valid.append(row)
    run.minutes_from_stamps = True
    return bool(run.train or run.valid)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _test_files(run: Run) -> tuple[Path, Path, Path, Path] | None:
    """(hypotheses, source, reference, data dir) of the scored test set, when all exist."""
    res = run.results or {}
    hyp = Path(res.get("hypotheses") or run.path / "test.hyp")
    if not hyp.is_file():
        run.notes.append("no test hypotheses saved: no BLEU by source length")
        return None
    data_dir = Path(res["data_dir"]) if res.get("data_dir") else None
    if data_dir is None and (run.path / "config.yaml").is_file():
        import yaml

        try:
            cfg = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))
            data_dir = Path(cfg["data"]["dir"])
        except (yaml.YAMLError, KeyError, TypeError):
            pass
    split = res.get("split", "test")
    src = Path(res["source"]) if res.get("source") else (data_dir or Path()) / f"{split}.src"
    ref = Path(res["reference"]) if res.get("reference") else (data_dir or Path()) / f"{split}.tgt"
    if data_dir is None or not src.is_file() or not ref.is_file():
        run.notes.append("the test source/reference files are gone: no BLEU by source length")
        return None
    return hyp, src, ref, data_dir


def source_lengths(sentences: list[str], data_dir: Path) -> list[int]:
    """Source length of each sentence in subwords of the data dir's SentencePiece model."""
    import sentencepiece as spm

    model = data_dir / "spm.model"
    if not model.is_file():
        model = data_dir / "spm.src.model"
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return [len(ids) for ids in sp.encode(sentences)]


def bucket_bleu(hyps: list[str], refs: list[str], lengths: list[int], tgt_lang: str | None):
    """sacreBLEU per source-length bucket: [{bucket, sentences, bleu}] in LENGTH_BUCKETS order."""
    from sacrebleu.metrics import BLEU

    from nmt.evaluate import bleu_tokenizer

    metric = BLEU(tokenize=bleu_tokenizer(tgt_lang))
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
    files = _test_files(run)
    if files is None:
        return
    hyp, src, ref, data_dir = files
    hyps, srcs, refs = _lines(hyp), _lines(src), _lines(ref)
    if not len(hyps) == len(srcs) == len(refs):
        run.notes.append(
            f"{hyp.name} has {len(hyps)} lines for {len(srcs)} source lines: no BLEU by length"
        )
        return
    meta = data_dir / "meta.json"
    tgt_lang = json.loads(meta.read_text()).get("tgt_lang") if meta.is_file() else None
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
    _read_backend(run)
    log = path / "train.log"
    if log.is_file():
        parse_train_log(run, log.read_text(encoding="utf-8", errors="replace"))
    elif not read_tensorboard(run):
        run.notes.append("no train.log or TensorBoard scalars")
    if run.minutes_from_stamps and run.valid:
        run.notes.append("minutes read off log times (validation time included)")
    run.summary = _read_json(run, "summary.json")
    if run.summary is None and (log.is_file() or run.valid):
        run.notes.append("no summary.json: still training, or stopped before the end")
    run.results = _read_json(run, "results.json")
    if not (path / "results.json").is_file():
        run.notes.append("not evaluated on the test set (no results.json)")
    if run.results is not None:
        _read_buckets(run)
    return run


def _names(paths: list[Path]) -> list[str]:
    """Run names: the dir name, or parent/name where two dirs share a name."""
    names = [Path(p).resolve().name for p in paths]
    return [
        f"{Path(p).resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for p, n in zip(paths, names)
    ]


# ---------------------------------------------------------------------------------------------
# Figures and the page


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: list[Run], path: Path) -> bool:
    """Validation BLEU and loss against training minutes and against steps; False if no data."""
    shown = [r for r in runs if r.valid]
    if not shown:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for (row, metric), (col, x) in (
        ((0, "bleu"), (0, "minutes")),
        ((0, "bleu"), (1, "step")),
        ((1, "loss"), (0, "minutes")),
        ((1, "loss"), (1, "step")),
    ):
        ax = axes[row][col]
        for r in shown:
            pts = [(v[x], v[metric]) for v in r.valid if metric in v]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=r.label)
        ax.set_xlabel("training minutes" if x == "minutes" else "steps")
        ax.set_ylabel(f"validation {'BLEU' if metric == 'bleu' else 'loss'}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_throughput(runs: list[Run], path: Path) -> bool:
    """Training target tokens per second against steps, one line per run."""
    shown = [r for r in runs if any(t.get("tok_s") for t in r.train)]
    if not shown:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in shown:
        pts = [(t["step"], t["tok_s"]) for t in r.train if t.get("tok_s") and t["step"] > 1]
        ax.plot(*zip(*pts) if pts else ([], []), label=r.label)
    ax.set_xlabel("steps")
    ax.set_ylabel("training target tokens/s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_length_bleu(runs: list[Run], path: Path) -> bool:
    """Test BLEU per source-length bucket: one bar group per bucket, one bar per run."""
    shown = [r for r in runs if r.buckets]
    if not shown:
        return False
    plt = _pyplot()
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
    _save(fig, path)
    return True


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=90, format="png")
    finally:
        plt.close(fig)


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
    runs = [read_run(Path(p), n) for p, n in zip(run_dirs, _names(run_dirs))]
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
