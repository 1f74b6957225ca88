"""The run dir's log files, written by training and read by `nmt report`: one module for both.

    train.log        the human-readable log (appended to across resumes)
    metrics.jsonl    the same events, one JSON object per line: what `nmt report` reads
    tensorboard/     TensorBoard scalars
    config.yaml      the resolved config          summary.json   the finished run's summary
    results.json     test scores (`nmt evaluate --json`), test.hyp its hypotheses

Run dirs written before metrics.jsonl existed are read from their train.log (or, without one,
their TensorBoard scalars).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nmt import files

LOG, METRICS_FILE, TENSORBOARD = "train.log", "metrics.jsonl", "tensorboard"
CONFIG, SUMMARY, RESULTS, TEST_HYP = "config.yaml", "summary.json", "results.json", "test.hyp"

_STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")
_START = re.compile(r"^(\w+): ([\d.]+)M parameters")
_TRAIN = re.compile(r"^step (\d+) epoch \d+ loss ([\d.]+) lr \S+ ([\d.]+) tgt tok/s")
_VALID = re.compile(r"^validation at step (\d+): (.*?)(?: \(([\d.]+) train min\))?$")


# ---------------------------------------------------------------------------------------------
# Writing


class Logger:
    """train.log, metrics.jsonl, TensorBoard scalars and a progress bar on stderr (rank 0 only:
    elsewhere every call does nothing)."""

    def __init__(self, run_dir: Path, enabled: bool, total: int | None, quiet: bool):
        self.enabled = enabled
        if enabled and (run_dir / LOG).is_file() and not (run_dir / METRICS_FILE).is_file():
            _backfill_metrics(run_dir)  # a run dir from before metrics.jsonl, resumed
        self.file = open(run_dir / LOG, "a", encoding="utf-8") if enabled else None
        self.metrics = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if enabled else None
        self.tb = None
        self.bar = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / TENSORBOARD))
            except ImportError:
                pass
            if not quiet:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False)

    def line(self, msg: str) -> None:
        """A line of train.log (and of the console)."""
        if not self.enabled:
            return
        with files.reporting_full_disk(self.file.name):
            self.file.write(f"{time.strftime(_STAMP_FORMAT)} {msg}\n")
            self.file.flush()
        if self.bar is not None:
            self.bar.write(msg, file=None)
        else:
            print(msg, flush=True)

    def _event(self, event: str, **values) -> None:
        if not self.enabled:
            return
        with files.reporting_full_disk(self.metrics.name):
            self.metrics.write(json.dumps({"event": event, "time": time.time(), **values}) + "\n")
            self.metrics.flush()

    def start(self, backend: str, params: int, pairs: int, device, world: int, step: int) -> None:
        """The first line of a (resumed) session."""
        self.line(
            f"{backend}: {params / 1e6:.2f}M parameters, {pairs} training pairs, device {device}, "
            f"world size {world}" + (f", resuming at step {step}" if step else "")
        )
        self._event("start", backend=backend, params_m=round(params / 1e6, 2), step=step)

    def train(self, step: int, epoch: int, row: dict) -> None:
        """A training row: loss, lr, tgt_tok_s."""
        self.line(
            f"step {step} epoch {epoch} loss {row['loss']:.3f} lr {row['lr']:.2e} "
            f"{row['tgt_tok_s']:.0f} tgt tok/s"
        )
        self._event("train", step=step, epoch=epoch, **row)
        self.scalars(step, row, "train")
        postfix = {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.1e}"}
        self.tick(step, postfix | {"tok/s": f"{row['tgt_tok_s']:.0f}"})

    def valid(self, step: int, result: dict, train_minutes: float) -> None:
        """A validation row: loss, ppl, bleu (or train_loss)."""
        scores = " ".join(
            f"{k} {v:.2f}" if k == "ppl" else f"{k} {v:.3f}" for k, v in result.items()
        )
        self.line(f"validation at step {step}: {scores} ({train_minutes:.2f} train min)")
        self._event("valid", step=step, train_minutes=train_minutes, **result)
        self.scalars(step, result, "valid")

    def extra_valid(self, step: int, name: str, result: dict, train_minutes: float) -> None:
        """A validation row of another data dir (`train.extra_valid`), by its name."""
        scores = " ".join(f"{k} {v:.3f}" for k, v in result.items() if k != "ppl")
        self.line(f"validation of {name} at step {step}: {scores}")
        self._event("extra_valid", step=step, name=name, train_minutes=train_minutes, **result)
        self.scalars(step, result, f"extra_valid/{name}")

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def tick(self, step: int, postfix: dict) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        for f in (self.file, self.metrics):
            if f is not None:
                f.close()


def _backfill_metrics(run_dir: Path) -> None:
    """metrics.jsonl from the train.log of a run written before it existed, so that the
    report of a resumed old run keeps its first sessions."""
    curves = Curves()
    parse_train_log(curves, (run_dir / LOG).read_text(encoding="utf-8", errors="replace"))
    events = [{"event": "start", "backend": curves.backend, "params_m": curves.params_m}]
    events += [
        {"event": "train", "step": r["step"], "loss": r["loss"], "tgt_tok_s": r["tok_s"]}
        for r in curves.train
    ]
    events += [{"event": "valid", "train_minutes": r.pop("minutes"), **r} for r in curves.valid]
    events.sort(key=lambda e: (e.get("step", -1), e["event"] == "valid"))
    lines = "".join(json.dumps({**e, "time": 0.0}) + "\n" for e in events)
    files.write_text(run_dir / METRICS_FILE, lines)


def write_summary(run_dir: Path, summary: dict) -> None:
    files.write_text(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class Curves:
    """A run's training and validation rows, as far as its log could be read."""

    backend: str | None = None
    params_m: float | None = None
    train: list[dict] = field(default_factory=list)  # step, loss, tok_s
    valid: list[dict] = field(default_factory=list)  # step, minutes, loss, ppl, bleu
    extra: dict[str, list[dict]] = field(default_factory=dict)  # name -> step, loss, ppl, bleu
    minutes_from_stamps: bool = False  # minutes read off log times (validation included)
    notes: list[str] = field(default_factory=list)


def read_curves(run_dir: Path) -> Curves:
    """metrics.jsonl, else train.log, else TensorBoard scalars; what is missing becomes a note."""
    run_dir, curves = Path(run_dir), Curves()
    if (run_dir / METRICS_FILE).is_file():
        _read_metrics(curves, run_dir / METRICS_FILE)
    elif (run_dir / LOG).is_file():
        parse_train_log(curves, (run_dir / LOG).read_text(encoding="utf-8", errors="replace"))
    elif not _read_tensorboard(curves, run_dir / TENSORBOARD):
        curves.notes.append(f"no {LOG} or TensorBoard scalars (and no {METRICS_FILE})")
    return curves


def has_log(run_dir: Path) -> bool:
    return any((Path(run_dir) / n).is_file() for n in (METRICS_FILE, LOG))


def _read_metrics(curves: Curves, path: Path) -> None:
    """Rows of metrics.jsonl; a line cut short by a kill is skipped."""
    base, last, session_start = 0.0, 0.0, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(e, dict):
            continue
        t = float(e.get("time", 0.0))
        if e.get("event") == "start":  # first line of a (resumed) session
            curves.backend = e.get("backend", curves.backend)
            curves.params_m = e.get("params_m", curves.params_m)
            base, session_start = last, t
            continue
        session_start = t if session_start is None else session_start
        last = base + (t - session_start) / 60
        if not isinstance(e.get("step"), int):
            continue
        if e.get("event") == "train" and isinstance(e.get("loss"), (int, float)):
            curves.train.append({"step": e["step"], "loss": e["loss"], "tok_s": e.get("tgt_tok_s")})
        elif e.get("event") == "valid":
            row = {k: v for k, v in e.items() if k in ("step", "loss", "ppl", "bleu", "train_loss")}
            row["minutes"] = e.get("train_minutes", last)
            curves.valid.append(row)
        elif e.get("event") == "extra_valid" and isinstance(e.get("name"), str):
            row = {k: v for k, v in e.items() if k in ("step", "loss", "ppl", "bleu")}
            row["minutes"] = e.get("train_minutes", last)
            curves.extra.setdefault(e["name"], []).append(row)


def parse_train_log(curves: Curves, text: str) -> None:
    """Training and validation rows from train.log (appended to across resumes)."""
    base, last, session_start = 0.0, 0.0, None
    for line in text.splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), _STAMP_FORMAT).timestamp()
        msg = m.group(2)
        if (p := _START.match(msg)) is not None:  # first line of a (resumed) session
            curves.backend = curves.backend or p.group(1)
            curves.params_m = float(p.group(2))
            base, session_start = last, t
            continue
        session_start = t if session_start is None else session_start
        last = base + (t - session_start) / 60
        if (r := _TRAIN.match(msg)) is not None:
            curves.train.append(
                {"step": int(r.group(1)), "loss": float(r.group(2)), "tok_s": float(r.group(3))}
            )
        elif (v := _VALID.match(msg)) is not None:
            row = {"step": int(v.group(1)), **_number_pairs(v.group(2))}
            if v.group(3) is None:
                curves.minutes_from_stamps = True
            row["minutes"] = float(v.group(3)) if v.group(3) is not None else last
            curves.valid.append(row)


def _number_pairs(text: str) -> dict:
    words = text.split()
    out = {}
    for key, value in zip(words[::2], words[1::2]):
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def _read_tensorboard(curves: Curves, tb: Path) -> bool:
    """Training and validation rows from TensorBoard event files; False when there are none."""
    if not tb.is_dir() or not any(tb.iterdir()):
        return False
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        curves.notes.append("tensorboard is not installed: its scalars were not read")
        return False
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))

    def series(tag):
        return {e.step: (e.value, e.wall_time) for e in acc.Scalars(tag)} if tag in tags else {}

    loss, tok = series("train/loss"), series("train/tgt_tok_s")
    curves.train = [
        {"step": s, "loss": v, "tok_s": tok.get(s, (None,))[0]} for s, (v, _) in loss.items()
    ]
    valid = {k: series(f"valid/{k}") for k in ("loss", "ppl", "bleu")}
    start = min((w for _, w in loss.values()), default=None)
    for s, (v, wall) in sorted(valid["loss"].items()):
        row = {"step": s, "loss": v, "minutes": (wall - (start or wall)) / 60}
        row.update({k: valid[k][s][0] for k in ("ppl", "bleu") if s in valid[k]})
        curves.valid.append(row)
    curves.minutes_from_stamps = True
    return bool(curves.train or curves.valid)
