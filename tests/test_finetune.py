"""Starting from a trained model: --init-from, --spm-model and the forgetting guard."""

from __future__ import annotations

import json

import pytest
import torch

from nmt import checkpoint, runlog
from nmt.datadir import load_tokenizer, read_meta, spm_reference
from nmt.errors import NMTError
from nmt.preprocess import PreprocessOptions, preprocess
from nmt.sources import Source
from nmt.training import Trainer, train
from tests.conftest import nmt, one_line_error, reverse_pairs, write_parallel
from tests.test_training import tiny_cfg

QUIET = ["train.valid_bleu=false", "train.best_metric=loss"]


@pytest.fixture(scope="module")
def base_run(toy_data_dir, tmp_path_factory):
    """A tiny Transformer trained 4 steps with a moving average of its weights."""
    run = tmp_path_factory.mktemp("base") / "run"
    cfg = tiny_cfg(toy_data_dir, *QUIET, "train.max_steps=4", "train.ema_decay=0.5")
    train(cfg, run, quiet=True)
    return run


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_loads_exactly_the_checkpoint_weights(toy_data_dir, base_run, tmp_path):
    state = checkpoint.read(base_run / "last.pt")
    assert not equal_states(state.ema, state.model)  # the average is not the raw weights
    cfg = tiny_cfg(toy_data_dir, *QUIET, f"train.init_from={base_run / 'last.pt'}")
    trainer = Trainer(cfg, tmp_path / "ft", quiet=True)
    assert equal_states(trainer.model.state_dict(), state.ema)  # what translate would use
    assert trainer.progress.step == 0 and not trainer.optimizer.state
    assert trainer.scheduler.last_epoch == 0
    ema = tiny_cfg(
        toy_data_dir, *QUIET, f"train.init_from={base_run / 'best.pt'}", "train.ema_decay=0.9"
    )
    assert equal_states(Trainer(ema, tmp_path / "ft2", quiet=True).ema.state_dict(), state.ema)


def test_reset_optimizer_false_keeps_the_moments_under_the_new_settings(
    toy_data_dir, base_run, tmp_path
):
    state = checkpoint.read(base_run / "last.pt")
    keep = [f"train.init_from={base_run / 'last.pt'}", "train.reset_optimizer=false"]
    trainer = Trainer(
        tiny_cfg(toy_data_dir, *QUIET, *keep, "train.lr=0.002"), tmp_path / "ft", quiet=True
    )
    saved = state.optimizer["state"]
    mine = trainer.optimizer.state_dict()["state"]
    assert saved.keys() == mine.keys()
    assert all(torch.equal(saved[k]["exp_avg"], mine[k]["exp_avg"].cpu()) for k in saved)
    group = trainer.optimizer.param_groups[0]
    assert group["initial_lr"] == 0.002 and trainer.scheduler.last_epoch == 0
    assert trainer.progress.step == 0
    best = [f"train.init_from={base_run / 'best.pt'}", "train.reset_optimizer=false"]
    with pytest.raises(NMTError, match="inference-only"):
        Trainer(tiny_cfg(toy_data_dir, *QUIET, *best), tmp_path / "ft2", quiet=True)
    with pytest.raises(NMTError, match="applies to train.init_from"):
        tiny_cfg(toy_data_dir, "train.reset_optimizer=false")


def test_init_from_refuses_another_model_or_vocabulary(toy_data_dir, base_run, tmp_path):
    init = f"train.init_from={base_run / 'last.pt'}"
    with pytest.raises(NMTError, match=r"model.d_model \(32 -> 48\)"):
        Trainer(
            tiny_cfg(toy_data_dir, *QUIET, init, "model.d_model=48"), tmp_path / "a", quiet=True
        )
    with pytest.raises(NMTError, match=r"model.backend \(transformer -> rnn\)"):
        Trainer(
            tiny_cfg(toy_data_dir, *QUIET, init, "model.backend=rnn"), tmp_path / "b", quiet=True
        )
    Trainer(
        tiny_cfg(toy_data_dir, *QUIET, init, "model.dropout=0.3"), tmp_path / "c", quiet=True
    )  # no weight
    other = _data_dir(tmp_path / "other", reverse_pairs(300, 5), vocab_size=32)
    with pytest.raises(NMTError, match="--spm-model"):
        Trainer(tiny_cfg(other, *QUIET, init), tmp_path / "d", quiet=True)


def _data_dir(out, pairs, **opts):
    prefix = write_parallel(out.parent / f"{out.name}-raw", "train", pairs)
    valid = write_parallel(out.parent / f"{out.name}-raw", "valid", pairs[:20])
    sources = {
        "train": Source("plain", (f"{prefix}.src", f"{prefix}.tgt")),
        "valid": Source("plain", (f"{valid}.src", f"{valid}.tgt")),
    }
    preprocess(
        PreprocessOptions(src_lang="src", tgt_lang="tgt", sources=sources, **opts),
        out,
        log=lambda m: None,
    )
    return out


def copy_pairs(n: int, seed: int, extra: str = "") -> list[tuple[str, str]]:
    return [(s + extra, s + extra) for s, _ in reverse_pairs(n, seed)]


def test_spm_model_encodes_with_the_given_vocabulary_and_reports_coverage(
    toy_data_dir, base_run, tmp_path
):
    lines = []
    new = _data_dir(tmp_path / "new", copy_pairs(300, 7), spm_model=str(toy_data_dir))
    run = preprocess
    assert load_tokenizer(new).vocabulary == load_tokenizer(toy_data_dir).vocabulary
    original = spm_reference(read_meta(toy_data_dir))
    assert original and read_meta(new).spm_reference == original
    assert spm_reference(read_meta(new)) == original  # a reuse of the reuse compares the same
    prefix = write_parallel(tmp_path / "odd", "train", copy_pairs(300, 8, " qqqq"))
    sources = {"train": Source("plain", (f"{prefix}.src", f"{prefix}.tgt"))}
    for spm in (base_run / "best.pt", toy_data_dir / "spm.model", toy_data_dir):
        lines.clear()
        opts = PreprocessOptions("src", "tgt", sources=sources, spm_model=str(spm))
        run(opts, tmp_path / f"odd-{spm.name}", log=lines.append)
        text = "\n".join(lines)
        assert "unknown pieces" in text and "pieces per word" in text
        assert "warning:" in text and "vocabulary misses" in text  # q is not in the vocabulary
        assert ("original corpus" in text) == (spm.suffix != ".model")  # a bare model: no figures
        assert "sentencepiece:" not in text  # no training
    with pytest.raises(NMTError, match="not a SentencePiece model"):
        bad = tmp_path / "bad.model"
        bad.write_text("not a model")
        run(PreprocessOptions("src", "tgt", sources=sources, spm_model=str(bad)), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_spm_model_refuses_options_of_a_new_vocabulary(toy_data_dir, tmp_path):
    prefix = write_parallel(tmp_path / "raw", "train", copy_pairs(50, 1))
    res = nmt(
        "preprocess", "--src", "src", "--tgt", "tgt", "--train-prefix", prefix,
        "--spm-model", toy_data_dir, "--vocab-size", "100", "-o", tmp_path / "d", check=False,
    )  # fmt: skip
    one_line_error(res, "--vocab-size", "--spm-model")
    assert not (tmp_path / "d").exists()


def test_fine_tuning_warns_when_the_model_forgets_and_report_reads_it(trained, tmp_path):
    """A reversal model fine-tuned to copy: its BLEU on the reversal data falls, and says so."""
    raw = tmp_path / "raw"
    for split, n, seed in (("train", 1000, 21), ("valid", 40, 22)):
        write_parallel(raw, split, copy_pairs(n, seed), "xx", "yy")
    copy = tmp_path / "copy"
    nmt(
        "preprocess", "--src", "xx", "--tgt", "yy", "--train-prefix", raw / "train",
        "--valid-prefix", raw / "valid", "--spm-model", trained / "data", "-o", copy,
    )  # fmt: skip
    run = tmp_path / "ft"
    res = nmt(
        "train", trained / "cfg.yaml", "--init-from", trained / "run" / "best.pt", "-o", run,
        f"data.dir={copy}", "train.max_steps=40", "train.valid_every=20", "train.warmup=1",
        f"train.extra_valid=[{trained / 'data'}]",
    )  # fmt: skip
    log = (run / "train.log").read_text()
    assert "initialised from" in log and "validation of data at step 0" in log
    assert "warning: BLEU on data fell" in log, log[-2000:]
    curves = runlog.read_curves(run).extra["data"]
    assert [r["step"] for r in curves] == [0, 20, 40]
    assert curves[0]["bleu"] > curves[-1]["bleu"] + 2
    assert res.returncode == 0
    both = nmt(
        "train",
        trained / "cfg.yaml",
        "--init-from",
        run / "best.pt",
        "--resume",
        "-o",
        run,
        check=False,
    )
    one_line_error(both, "--init-from", "--resume")
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "extra_valid" for e in events) == 3
