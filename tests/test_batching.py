"""Token-bounded, length-bucketed batches."""

from __future__ import annotations

import numpy as np

from nmt.batching import bucket_batches, collate
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID


def lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60, n)
    return src, np.clip(src + rng.integers(-5, 6, n), 1, None)


def test_batches_cover_everything_once_and_respect_max_tokens():
    src, tgt = lengths()
    batches = bucket_batches(src, tgt, 600, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(src)))
    for b in batches:
        assert len(b) == 1 or np.maximum(src[b], tgt[b]).max() * len(b) <= 600


def test_bucketing_keeps_padding_low():
    src, tgt = lengths(5000)
    batches = bucket_batches(src, tgt, 4000, np.random.default_rng(0))
    for side in (src, tgt):  # both sides packed, though lengths differ by up to 5 tokens
        real = sum(side[b].sum() for b in batches)
        padded = sum(side[b].max() * len(b) for b in batches)
        assert real / padded > 0.9


def test_order_is_reproducible_from_the_seed_and_changes_per_epoch():
    src, tgt = lengths()
    a = bucket_batches(src, tgt, 600, np.random.default_rng([7, 0]))
    b = bucket_batches(src, tgt, 600, np.random.default_rng([7, 0]))
    c = bucket_batches(src, tgt, 600, np.random.default_rng([7, 1]))
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))


def test_collate_adds_bos_and_eos_and_pads():
    src, tgt_in, tgt_out = collate([[5, 6, EOS_ID], [7, EOS_ID]], [[8, 9], [10]], "cpu")
    assert src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert tgt_in.tolist() == [[BOS_ID, 8, 9], [BOS_ID, 10, PAD_ID]]
    assert tgt_out.tolist() == [[8, 9, EOS_ID], [10, EOS_ID, PAD_ID]]


def test_ranks_get_disjoint_equal_shards():
    from nmt.batching import TrainBatches

    src, tgt = lengths(300)
    ds = {"src_len": src.tolist(), "tgt_len": tgt.tolist()}
    shards = [TrainBatches(ds, 500, seed=3, rank=r, world=2).epoch(0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    ids = [set(np.concatenate(s).tolist()) for s in shards]
    assert not ids[0] & ids[1]
