"""Subword regularisation of training batches (train.subword_alpha)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.batching import (
    OVERSIZE,
    RECUT_WINDOW,
    BatchPlan,
    Sampling,
    TrainBatches,
    _split_oversize,
    recut,
)
from nmt.datadir import has_text, load_encoded, load_tokenizer
from nmt.errors import NMTError
from nmt.tokenizer import PAD_ID, Tokenizer
from nmt.training import train
from tests.test_training import tiny_cfg

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def rows(batch) -> list[tuple[list[int], list[int]]]:
    """(source ids with EOS, target ids) of each row of a padded batch."""
    src, _, tgt_out, _ = batch
    out = []
    for s, t in zip(src.tolist(), tgt_out.tolist()):
        s, t = [x for x in s if x != PAD_ID], [x for x in t if x != PAD_ID]
        out.append((s, t[:-1]))  # tgt_out ends with EOS
    return out


@pytest.fixture(scope="module")
def sampled(toy_data_dir):
    ds = load_encoded(toy_data_dir, "train")
    tok = load_tokenizer(toy_data_dir)
    return ds, tok, TrainBatches(ds, BatchPlan(300, 1, sampling=Sampling(0.1), tokenizer=tok))


def read_window(batches, epoch: int, n: int = RECUT_WINDOW):
    """The rows of the first `n` batches of an epoch, and the schedule's row indices there."""
    schedule = batches.epoch(epoch)[:n]
    got = [
        r
        for i, idx in enumerate(schedule)
        for p in batches.read(idx, (epoch, i))[0]
        for r in rows(p)
    ]
    return got, np.concatenate(schedule)


def test_segmentations_change_across_epochs_and_decode_to_the_same_text(sampled):
    ds, tok, batches = sampled
    first, idx = read_window(batches, 0)
    again, _ = read_window(batches, 0)
    assert first == again  # the same (epoch, batch) draws the same segmentations
    texts = ds[idx.tolist()]
    decoded = [(tok.src.decode(s[:-1]), tok.decode_tgt(t)) for s, t in first]
    assert sorted(decoded) == sorted(zip(texts["src_text"], texts["tgt_text"]))
    stored = dict(
        zip(zip(texts["src_text"], texts["tgt_text"]), zip(texts["src_ids"], texts["tgt_ids"]))
    )
    later, _ = read_window(batches, 1, len(batches.epoch(1)))  # the whole next epoch
    seen = {(tok.src.decode(s[:-1]), tok.decode_tgt(t)): (s, t) for s, t in later}
    for side in (0, 1):  # both sides differ from the stored ids and from the next epoch's draws
        for other in (stored, seen):
            differ = sum(other[text][side] != ids[side] for text, ids in zip(decoded, first))
            assert differ > len(first) // 4


def test_sampled_batches_are_recut_on_their_sampled_lengths():
    # batches cut on other lengths mix short and long pairs; the recut sorts them apart
    pairs = [([1] * n, [2] * (n - 1)) for n in (2, 9, 2, 9, 2, 9, 2, 9)]
    groups = recut(pairs, 2, np.random.default_rng(0))
    assert sorted(len(g) for g in groups) == [4, 4]
    assert sorted({len(s) for s, _ in g}.pop() for g in groups) == [2, 9]
    assert all(len({len(s) for s, _ in g}) == 1 for g in groups)
    assert sorted(p for g in groups for p in g) == sorted(pairs)
    assert [len(g) for g in recut(pairs, 8, np.random.default_rng(0))] == [1] * 8
    one = recut(pairs[:1] * 5, 3, np.random.default_rng(0))  # equal lengths: halves
    assert sorted(len(g) for g in one) == [1, 2, 2]


def test_the_recut_leaves_less_padding(sampled):
    _, _, batches = sampled
    padded = {True: 0, False: 0}
    for i, idx in enumerate(batches.epoch(0)[:RECUT_WINDOW]):
        parts, _ = batches.read(idx, (0, i))
        padded[True] += sum(p[0].numel() + p[2].numel() for p in parts)
        pairs = batches._sample(idx, 0, i)  # the same draws, in the schedule's batch
        padded[False] += len(pairs) * (
            max(len(s) for s, _ in pairs) + max(len(t) + 1 for _, t in pairs)
        )
    assert padded[True] < padded[False]


def test_without_sampling_the_stored_ids_come_bit_for_bit(toy_data_dir):
    ds = load_encoded(toy_data_dir, "train")
    plain = TrainBatches(ds, BatchPlan(300, 1))
    for idx in plain.epoch(0)[:3]:
        (got,), n = plain.read(idx, (0, 5))
        r = ds[idx.tolist()]
        assert rows(got) == [(s, t) for s, t in zip(r["src_ids"], r["tgt_ids"])]
        assert n == plain.target_tokens(idx)


def test_a_sampled_batch_over_the_budget_is_split(sampled):
    ds, tok, _ = sampled
    small = TrainBatches(ds, BatchPlan(60, 1, sampling=Sampling(0.05), tokenizer=tok))
    split = 0
    schedule = small.epoch(0)[: 3 * RECUT_WINDOW]  # whole windows
    n_rows = 0
    for i, idx in enumerate(schedule):
        parts, n_tokens = small.read(idx, (0, i))
        split += len(parts) > 1
        for src, _, tgt_out, _ in parts:
            size = src.size(0) * max(src.size(1), tgt_out.size(1))
            assert size <= OVERSIZE * 60 or src.size(0) == 1
        assert n_tokens == sum(int((p[2] != PAD_ID).sum()) for p in parts)
        n_rows += sum(p[0].size(0) for p in parts)
    assert split > 0 and n_rows == sum(len(idx) for idx in schedule)
    pairs = [([1] * 5, [2] * 3)] * 4
    assert [len(p) for p in _split_oversize(pairs, 12)] == [2, 2]
    assert [len(p) for p in _split_oversize(pairs, 24)] == [4]


COMMON = ["train.valid_every=4", "train.valid_bleu=false", "train.best_metric=loss"]
COMMON += ["train.subword_alpha=0.2", "model.dropout=0.3"]


def test_resume_with_sampling_is_exact(toy_data_dir, tmp_path):
    full = train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=10"), tmp_path / "a", quiet=True)
    first = train(tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=4"), tmp_path / "b", quiet=True)
    rest = train(
        tiny_cfg(toy_data_dir, *COMMON, "train.max_steps=10"),
        tmp_path / "b",
        resume=True,
        quiet=True,
    )
    resumed = dict(first["losses"] + rest["losses"])
    plain = train(
        tiny_cfg(toy_data_dir, *COMMON[:-2], "train.max_steps=10"), tmp_path / "c", quiet=True
    )
    for step, loss in full["losses"]:
        assert resumed[step] == pytest.approx(loss, rel=1e-5), f"step {step}"
    assert [l for _, l in full["losses"]] != pytest.approx([l for _, l in plain["losses"]])


def test_sampling_needs_a_data_dir_that_keeps_its_text(tmp_path):
    assert not has_text(load_encoded(LEGACY / "data", "train"))
    with pytest.raises(NMTError, match="re-run nmt preprocess"):
        train(
            tiny_cfg(LEGACY / "data", "train.subword_alpha=0.1", "train.max_steps=1"),
            tmp_path / "r",
        )


def test_the_settings_are_checked(toy_data_dir):
    for bad, msg in (
        ("train.subword_alpha=1.5", "subword_alpha"),
        ("train.subword_nbest=1", "subword_nbest"),
    ):
        with pytest.raises(NMTError, match=msg):
            tiny_cfg(toy_data_dir, bad)


def test_the_text_columns_encode_to_the_stored_ids(toy_data_dir):
    ds = load_encoded(toy_data_dir, "train")
    tok = load_tokenizer(toy_data_dir)
    r = ds[:50]
    assert tok.encode_src(r["src_text"]) == r["src_ids"]
    assert tok.encode_tgt(r["tgt_text"]) == r["tgt_ids"]
    assert np.all(np.asarray(r["src_len"]) > 0) and torch is not None


def test_a_sampled_sentence_over_the_model_limit_keeps_its_stored_ids(sampled):
    ds, tok, _ = sampled
    limit = int(max(max(ds["src_len"]), max(ds["tgt_len"])))  # every stored pair fits
    tight = TrainBatches(
        ds, BatchPlan(300, 1, sampling=Sampling(0.05, max_len=limit), tokenizer=tok)
    )
    pairs, idx = read_window(tight, 0)
    stored = ds[idx.tolist()]
    stored = set(zip(map(tuple, stored["src_ids"]), map(tuple, stored["tgt_ids"])))
    assert all(len(s) <= limit and len(t) + 1 <= limit for s, t in pairs)
    assert sum((tuple(s), tuple(t)) in stored for s, t in pairs) > 0


SAMPLE_IN_A_PROCESS = """
import sys
from nmt.datadir import load_encoded, load_tokenizer
lines = load_encoded(sys.argv[1], "train")["src_text"][:200]
print(load_tokenizer(sys.argv[1]).sample(lines, lines, 0.1, -1, [7, 8])[0])
"""


@pytest.mark.skipif(Tokenizer.sampling_warning() is not None, reason="SentencePiece >= 0.2.2")
def test_sampling_draws_the_same_in_every_process(toy_data_dir):
    """`--resume` replays the draws in a new process: the seeds alone must decide them
    (SentencePiece 0.2.2 and later draw differently in every process, whatever the seed)."""
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", SAMPLE_IN_A_PROCESS, str(toy_data_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    plain = load_encoded(toy_data_dir, "train")["src_ids"][:200]
    assert runs[0].strip() != str(plain)  # and they are draws, not the stored segmentation


def test_training_warns_where_sentencepiece_ignores_the_seed(toy_data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Tokenizer, "sampling_warning", staticmethod(lambda: "draws vary"))
    cfg = tiny_cfg(toy_data_dir, "train.max_steps=1", "train.subword_alpha=0.1")
    train(cfg, tmp_path / "run", quiet=True)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "warning: draws vary" in log
