"""The training loop: checkpoints, resume and what it refuses, Ctrl-C and SIGTERM, DDP on CPU."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nmt import checkpoint
from nmt.config import load_config
from nmt.datadir import load_encoded
from nmt.errors import NMTError
from nmt.training import train
from tests.conftest import tiny_run

TINY = [
    "model.d_model=32",
    "model.n_heads=4",
    "model.d_ff=64",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "train.max_tokens=300",
    "train.lr=1e-3",
    "train.warmup=10",
    "train.log_every=1",
    "train.valid_max_sentences=20",
]


def tiny_cfg(data_dir, *extra):
    """TINY sizes, without the Transformer's keys when `extra` picks another backend."""
    backend = next((e.split("=", 1)[1] for e in extra if e.startswith("model.backend=")), None)
    drop = ("model.n_heads", "model.d_ff") if backend not in (None, "transformer") else ()
    sizes = [t for t in TINY if not t.startswith(drop)] if drop else TINY
    return load_config(None, [f"data.dir={data_dir}", *sizes, *extra])


def test_train_writes_checkpoints_and_logs(toy_data_dir, tmp_path):
    cfg = tiny_cfg(toy_data_dir, "train.max_steps=6", "train.valid_every=3", "train.keep_last=1")
    summary = train(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert summary["steps"] == 6 and summary["stop_reason"] == "reached max_steps=6"
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt", "step-6.pt"]
    for name in ("config.yaml", "train.log", "summary.json"):
        assert (run / name).is_file()
    assert list((run / "tensorboard").iterdir())
    state = checkpoint.load(run / "last.pt")
    assert state["progress"]["step"] == 6
    assert state["config"]["model"]["d_model"] == 32
    assert {"optimizer", "scheduler", "rng", "tokenizer"} <= set(state)
    assert "optimizer" not in checkpoint.load(run / "best.pt")  # inference-only
    assert "validation at step 6" in (run / "train.log").read_text()


@pytest.mark.parametrize("backend", ["transformer", "rnn_attention"])
def test_resume_reproduces_the_uninterrupted_run(toy_data_dir, tmp_path, backend):
    common = [f"model.backend={backend}", "train.valid_every=4", "train.valid_bleu=false"]
    common += ["train.best_metric=loss", "model.dropout=0.3"]
    full = train(tiny_cfg(toy_data_dir, *common, "train.max_steps=10"), tmp_path / "a", quiet=True)
    first = train(tiny_cfg(toy_data_dir, *common, "train.max_steps=4"), tmp_path / "b", quiet=True)
    rest = train(
        tiny_cfg(toy_data_dir, *common, "train.max_steps=10"),
        tmp_path / "b",
        resume=True,
        quiet=True,
    )
    assert [s for s, _ in first["losses"]] == [1, 2, 3, 4]
    assert [s for s, _ in rest["losses"]] == list(range(5, 11))
    resumed = dict(first["losses"] + rest["losses"])
    for step, loss in full["losses"]:
        assert resumed[step] == pytest.approx(loss, rel=1e-5), f"step {step}"


def test_resume_needs_a_checkpoint_and_fresh_runs_refuse_to_overwrite(toy_data_dir, tmp_path):
    with pytest.raises(NMTError, match="no checkpoint"):
        train(tiny_cfg(toy_data_dir, "train.max_steps=1"), tmp_path / "empty", resume=True)
    train(tiny_cfg(toy_data_dir, "train.max_steps=1"), tmp_path / "r", quiet=True)
    with pytest.raises(NMTError, match="use --resume or another run dir"):
        train(tiny_cfg(toy_data_dir, "train.max_steps=1"), tmp_path / "r", quiet=True)


def test_resume_refuses_what_the_runs_state_carries(toy_data_dir, other_vocab_data, tmp_path):
    """`--resume train.lr=1e-5` kept the old rate while config.yaml said 1e-5."""
    run = tmp_path / "run"
    tiny_run(toy_data_dir, run)
    recorded = (run / "config.yaml").read_text()
    for change in ("train.lr=1e-5", "train.warmup=7", "train.max_tokens=400"):
        key = change.split("=")[0]
        with pytest.raises(NMTError, match=rf"--resume cannot change {key} \("):
            tiny_run(toy_data_dir, run, change, resume=True)
    with pytest.raises(NMTError, match="is not the one .* was trained with"):
        tiny_run(other_vocab_data, run, resume=True)
    assert (run / "config.yaml").read_text() == recorded  # nothing rewritten
    summary = tiny_run(toy_data_dir, run, "train.max_steps=3", "train.log_every=1", resume=True)
    assert summary["steps"] == 3  # budgets and logging take effect


def test_without_a_validation_split_best_pt_follows_the_training_loss(toy_data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data_dir, data, ignore=shutil.ignore_patterns("valid*"))
    run = tmp_path / "run"
    summary = train(
        tiny_cfg(data, "train.max_steps=4", "train.valid_every=2", "train.patience=1"),
        run,
        quiet=True,
    )
    log = (run / "train.log").read_text()
    assert f"no validation split in {data}" in log
    assert summary["best_metric"] == "train_loss" and summary["best"] is not None
    history = checkpoint.load(run / "last.pt")["progress"]["history"]
    assert [h["step"] for h in history] == [2, 4] and all("train_loss" in h for h in history)
    best = checkpoint.load(run / "best.pt")["progress"]
    assert best["best"] == min(h["train_loss"] for h in history)


def env():
    return os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(toy_data_dir, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nmt", "train", "-o", str(run), "-q", f"data.dir={toy_data_dir}"]
    cmd += TINY + ["train.max_steps=100000", "train.valid_every=100000"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), text=True
    )
    log = run / "train.log"
    deadline = time.time() + 180
    while time.time() < deadline and not (log.is_file() and "step 3 " in log.read_text()):
        time.sleep(0.2)
    assert "step 3 " in log.read_text(), "training did not start in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err
    state = checkpoint.load(run / "last.pt")
    assert state["progress"]["step"] >= 3
    assert f"interrupted at step {state['progress']['step']}" in log.read_text()


@pytest.mark.slow
def test_sigterm_saves_last_pt_like_ctrl_c(toy_data_dir, tmp_path):
    run = tmp_path / "run"
    args = ["-m", "nmt", "train", "-o", str(run), "-q", f"data.dir={toy_data_dir}", *TINY]
    args += ["train.max_steps=100000", "train.valid_every=100000"]
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env()
    )
    log = run / "train.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.is_file() and "step 3 " in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"Traceback" not in err
    step = checkpoint.load(run / "last.pt")["progress"]["step"]
    assert step >= 3
    assert f"stopped by SIGTERM at step {step}" in log.read_text()


@pytest.mark.slow
def test_two_process_ddp_on_cpu_stays_in_sync(toy_data_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "nmt", "train", "-o", str(run), "-q", f"data.dir={toy_data_dir}"]
    cmd += TINY + ["train.max_steps=4", "train.valid_every=2", "train.device=cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    text = (run / "train.log").read_text()
    assert "world size 2" in text
    assert "ranks in sync: parameter checksum" in text
    assert checkpoint.load(run / "last.pt")["progress"]["step"] == 4


def test_resumed_optimizer_stays_fused_when_the_checkpoint_was_not():
    import torch

    from nmt.config import TrainConfig
    from nmt.precision import make_optimizer, restore_fused

    model = torch.nn.Linear(4, 3)
    old = torch.optim.Adam(model.parameters(), fused=False)
    model(torch.randn(2, 4)).sum().backward()
    old.step()
    new = make_optimizer(model, TrainConfig())
    new.load_state_dict(old.state_dict())
    assert new.param_groups[0]["fused"] is not True  # what load_state_dict alone gives
    restore_fused(new, torch.device("cpu"))
    assert new.param_groups[0]["fused"] is True
    new.step()  # the fused kernel accepts the restored state
    assert int(new.state[model.weight]["step"]) == 2


def test_resume_mid_epoch_reads_only_the_batches_it_trains_on(toy_data_dir, tmp_path, monkeypatch):
    """The checkpoint's data position decides the next batch; nothing before it is re-read."""
    from nmt.batching import BatchPlan, TrainBatches

    common = ["train.valid_every=3", "train.valid_bleu=false", "train.best_metric=loss"]
    train(tiny_cfg(toy_data_dir, *common, "train.max_steps=3"), tmp_path / "r", quiet=True)
    state = checkpoint.load(tmp_path / "r" / "last.pt")
    epoch, position = state["progress"]["epoch"], state["progress"]["batch"]
    reads = []
    real_read = TrainBatches.read
    monkeypatch.setattr(
        TrainBatches, "read", lambda self, idx, key: reads.append(idx) or real_read(self, idx, key)
    )
    cfg = tiny_cfg(toy_data_dir, *common, "train.max_steps=5")
    train(cfg, tmp_path / "r", resume=True, quiet=True)
    plan = BatchPlan(300, cfg.train.seed)
    schedule = TrainBatches(load_encoded(toy_data_dir, "train"), plan).epoch(epoch)
    assert np.array_equal(reads[0], schedule[position])
    assert np.array_equal(reads[1], schedule[position + 1])
    assert len(reads) <= 2 + 4 + 1  # the 2 steps plus at most the prefetch depth ahead


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multinode
def test_two_nodes_with_c10d_rendezvous_train_in_sync_and_rank_0_alone_writes(
    toy_data_dir, tmp_path
):
    """Two torchrun agents on this machine stand in for two nodes (gloo, one process each)."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
        cmd += ["--node-rank", str(node), "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
        cmd += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nmt-test"]
        cmd += ["-m", "nmt", "train", "-o", str(tmp_path / f"node{node}"), "-q"]
        cmd += [f"data.dir={toy_data_dir}", *TINY, "train.max_steps=4", "train.valid_every=2"]
        cmd += ["train.device=cpu"]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env())
        )
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    written = [d for d in (tmp_path / "node0", tmp_path / "node1") if d.exists()]
    assert len(written) == 1  # the rendezvous picks which node is rank 0; only it writes
    text = (written[0] / "train.log").read_text()
    assert "world size 2" in text
    assert "ranks in sync: parameter checksum" in text
    assert checkpoint.load(written[0] / "last.pt")["progress"]["step"] == 4


def test_report_draws_curves_from_metrics_jsonl_alone(toy_data_dir, tmp_path):
    """The real trainer's metrics.jsonl carries the report: with train.log deleted, the curves
    are still drawn, and its rows are the ones train.log shows (writer and reader together)."""
    from nmt import report, runlog

    run = tmp_path / "run"
    cfg = tiny_cfg(toy_data_dir, "train.max_steps=4", "train.valid_every=2", "train.log_every=1")
    train(cfg, run, quiet=True)
    from_log = runlog.Curves()
    runlog.parse_train_log(from_log, (run / runlog.LOG).read_text())
    (run / runlog.LOG).unlink()
    shutil.rmtree(run / runlog.TENSORBOARD)
    r = report.read_run(run)
    assert [t["step"] for t in r.train] == [t["step"] for t in from_log.train] == [1, 2, 3, 4]
    assert [round(t["loss"], 3) for t in r.train] == [t["loss"] for t in from_log.train]
    assert [v["step"] for v in r.valid] == [2, 4] and all("bleu" in v for v in r.valid)
    assert r.backend == "transformer" and r.params_m == from_log.params_m
    report.write_report([run], tmp_path / "out")
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_accumulated_batches_give_the_gradient_of_one_batch(toy_data_dir):
    """accum: batches A and B, each loss divided by the tokens of A and B together, give the
    gradient of one batch A+B (exact normalisation, not per batch times accum)."""
    import torch

    from nmt.batching import collate
    from nmt.models.backends import build_model
    from nmt.training import backward_group

    cfg = tiny_cfg(toy_data_dir, "model.dropout=0.0", "model.attention_dropout=0.0")
    rows = load_encoded(toy_data_dir, "train")[:7]
    src, tgt = rows["src_ids"], rows["tgt_ids"]
    a, b = collate(src[:2], tgt[:2], "cpu"), collate(src[2:], tgt[2:], "cpu")  # 2 + 5 pairs
    n_tokens = sum(len(t) + 1 for t in tgt)
    grads = []
    for group in ([a, b], [collate(src, tgt, "cpu")]):
        torch.manual_seed(0)
        model = build_model(cfg.model, 36, 36, joint=True)
        backward_group(model, group, n_tokens, label_smoothing=0.1)
        grads.append([p.grad for p in model.parameters()])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
