"""Shared fixtures: tiny synthetic tasks that train in seconds on CPU."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = "red blue green cat dog bird tree house river stone fish moon sun star cloud rain".split()


def reverse_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Word-reversal pairs: 'cat red moon' -> 'moon red cat'."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(2, 6))
        pairs.append((" ".join(words), " ".join(reversed(words))))
    return pairs


def write_parallel(directory, prefix: str, pairs, src="src", tgt="tgt") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for side, lang in ((0, src), (1, tgt)):
        (directory / f"{prefix}.{lang}").write_text("".join(p[side] + "\n" for p in pairs))
    return str(directory / prefix)


@pytest.fixture(scope="session")
def toy_data_dir(tmp_path_factory):
    """A preprocessed data dir for a word-reversal task (joint 36-piece vocabulary)."""
    from nmt.data import PreprocessOptions, Source, preprocess

    raw = tmp_path_factory.mktemp("toy_raw")
    sources = {}
    for split, n, seed in (("train", 1500, 1), ("valid", 60, 2), ("test", 60, 3)):
        prefix = write_parallel(raw, split, reverse_pairs(n, seed))
        sources[split] = Source("plain", (f"{prefix}.src", f"{prefix}.tgt"))
    out = tmp_path_factory.mktemp("toy") / "data"
    opts = PreprocessOptions(src_lang="src", tgt_lang="tgt", vocab_size=36, sources=sources)
    preprocess(opts, out, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(toy_data_dir, tmp_path_factory):
    """A tiny Transformer trained for two steps: a real checkpoint for translate tests."""
    from nmt.config import load_config
    from nmt.training import train

    run = tmp_path_factory.mktemp("tiny") / "run"
    overrides = ["model.d_model=32", "model.n_heads=4", "model.d_ff=64", "model.encoder_layers=1"]
    overrides += ["model.decoder_layers=1", "train.max_tokens=300", "train.max_steps=2"]
    overrides += ["train.valid_every=2", "train.valid_bleu=false", "train.best_metric=loss"]
    train(load_config(None, [f"data.dir={toy_data_dir}", *overrides]), run, quiet=True)
    return run / "best.pt"


DEVICES = ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device this machine has: tests using it run on the GPU too where there is one."""
    import torch

    return torch.device(request.param)
