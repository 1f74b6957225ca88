"""Subword regularisation of training batches (train.subword_alpha)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.batching import OVERSIZE, Sampling, TrainBatches, _split_oversize
from nmt.datadir import has_text, load_encoded, load_tokenizer
from nmt.errors import NMTError
from nmt.tokenizer import PAD_ID
from nmt.training import train
from tests.test_training import tiny_cfg

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def rows(batch) -> list[tuple[list[int], list[int]]]:
    """(source ids with EOS, target ids) of each row of a padded batch."""
    src, _, tgt_out = batch
    out = []
    for s, t in zip(src.tolist(), tgt_out.tolist()):
        s, t = [x for x in s if x != PAD_ID], [x for x in t if x != PAD_ID]
        out.append((s, t[:-1]))  # tgt_out ends with EOS
    return out


@pytest.fixture(scope="module")
def sampled(toy_data_dir):
    ds = load_encoded(toy_data_dir, "train")
    tok = load_tokenizer(toy_data_dir)
    return ds, tok, TrainBatches(ds, 300, 1, sampling=Sampling(0.1), tokenizer=tok)


def test_segmentations_change_across_epochs_and_decode_to_the_same_text(sampled):
    ds, tok, batches = sampled
    idx = batches.epoch(0)[0]
    first, _ = batches.read(idx, (0, 0))
    again, _ = batches.read(idx, (0, 0))
    later, _ = batches.read(idx, (1, 0))
    a, b, c = (sum((rows(p) for p in parts), []) for parts in (first, again, later))
    assert a == b  # the same (epoch, batch) draws the same segmentations
    assert [s for s, _ in a] != [s for s, _ in c] and [t for _, t in a] != [t for _, t in c]
    stored = [(s, t) for s, t in zip(ds[idx.tolist()]["src_ids"], ds[idx.tolist()]["tgt_ids"])]
    texts = ds[idx.tolist()]
    for (s, t), (s0, t0), src, tgt in zip(c, stored, texts["src_text"], texts["tgt_text"]):
        assert tok.src.decode(s[:-1]) == tok.src.decode(s0[:-1]) == src
        assert tok.decode_tgt(t) == tok.decode_tgt(t0) == tgt
    assert sum(s != s0 for (s, _), (s0, _) in zip(c, stored)) > len(c) // 4


def test_without_sampling_the_stored_ids_come_bit_for_bit(toy_data_dir):
    ds = load_encoded(toy_data_dir, "train")
    plain = TrainBatches(ds, 300, 1)
    for idx in plain.epoch(0)[:3]:
        (got,), n = plain.read(idx, (0, 5))
        r = ds[idx.tolist()]
        assert rows(got) == [(s, t) for s, t in zip(r["src_ids"], r["tgt_ids"])]
        assert n == plain.target_tokens(idx)


def test_a_sampled_batch_over_the_budget_is_split(sampled):
    ds, tok, _ = sampled
    small = TrainBatches(ds, 60, 1, sampling=Sampling(0.05), tokenizer=tok)
    split = 0
    for i, idx in enumerate(small.epoch(0)[:40]):
        parts, n_tokens = small.read(idx, (0, i))
        split += len(parts) > 1
        for src, _, tgt_out in parts:
            size = src.size(0) * max(src.size(1), tgt_out.size(1))
            assert size <= OVERSIZE * 60 or src.size(0) == 1
        assert n_tokens == sum(int((p[2] != PAD_ID).sum()) for p in parts)
        assert sum(p[0].size(0) for p in parts) == len(idx)
    assert split > 0
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
    tight = TrainBatches(ds, 300, 1, sampling=Sampling(0.05, max_len=limit), tokenizer=tok)
    kept = 0
    for i, idx in enumerate(tight.epoch(0)[:20]):
        parts, _ = tight.read(idx, (0, i))
        stored = ds[idx.tolist()]
        pairs = [p for part in parts for p in rows(part)]
        for (s, t), s0, t0 in zip(pairs, stored["src_ids"], stored["tgt_ids"]):
            assert len(s) <= limit and len(t) + 1 <= limit
            kept += (s, t) == (s0, t0)
    assert kept > 0
