"""Recipe Makefile plumbing on a small local sample (the real corpora need internet or time)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nmt.datadir import read_meta
from tests.conftest import reverse_pairs, write_parallel

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = [
    "model.d_model=32",
    "model.n_heads=4",
    "model.d_ff=64",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "train.max_steps=2",
    "train.valid_every=2",
    "train.valid_max_sentences=5",
]


def make(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run(
        ["make", "-C", "recipes/iwslt14-de-en", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_iwslt14_recipe_runs_on_local_files(tmp_path):
    raw = tmp_path / "raw"
    for split, n, seed in (("train", 400, 1), ("valid", 20, 2), ("test", 20, 3)):
        write_parallel(raw, split, reverse_pairs(n, seed), src="de", tgt="en")
    common = [f"DATA={raw}", f"DATA_BIN={tmp_path / 'bin'}", f"RUNS={tmp_path / 'runs'}"]
    res = make("data", *common, "PREPROCESS_ARGS=--vocab-size 36")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "fetch.py" not in res.stdout  # local files: nothing downloaded
    meta = read_meta(tmp_path / "bin")
    assert meta.counts["train"]["read"] == 400 and meta.joint_vocab
    res = make("train-transformer", *common, f"TRAIN_ARGS={' '.join(TINY_MODEL)}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "runs" / "transformer" / "best.pt").is_file()


def test_iwslt14_recipe_downloads_from_the_documented_hub_id_without_data(tmp_path):
    res = make("-n", "data", f"DATA={tmp_path / 'none'}", f"DATA_BIN={tmp_path / 'bin'}")
    assert res.returncode == 0, res.stderr
    for needle in ("fetch.py", "--hub bbaaaa/iwslt14-de-en", "--config de-en"):
        assert needle in res.stdout
    assert "--revision refs/convert/parquet" in res.stdout
    assert "--vocab-size 10000" in res.stdout


def test_iwslt14_config_is_fairseq_transformer_iwslt_de_en():
    from nmt.config import load_config

    cfg = load_config(ROOT / "recipes" / "iwslt14-de-en" / "transformer.yaml", [])
    m = cfg.model
    assert (m.encoder_layers, m.decoder_layers, m.d_model, m.n_heads, m.d_ff) == (
        6,
        6,
        512,
        4,
        1024,
    )
