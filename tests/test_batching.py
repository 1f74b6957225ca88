"""Token-bounded, length-bucketed batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


def same_batch(a, b) -> bool:
    """Two `Batch`es hold the same tensors and host lengths."""
    tensors = all(torch.equal(x, y) for x, y in zip(a[:3], b[:3]))
    return tensors and np.array_equal(a.src_lengths, b.src_lengths)


def test_collate_adds_bos_and_eos_and_pads():
    src, tgt_in, tgt_out, src_lengths = collate(
        [[5, 6, EOS_ID], [7, EOS_ID]], [[8, 9], [10]], "cpu"
    )
    assert src_lengths.tolist() == [3, 2]  # on the host, a numpy array
    assert src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert tgt_in.tolist() == [[BOS_ID, 8, 9], [BOS_ID, 10, PAD_ID]]
    assert tgt_out.tolist() == [[8, 9, EOS_ID], [10, EOS_ID, PAD_ID]]


def test_ranks_get_disjoint_equal_shards():
    from nmt.batching import BatchPlan, TrainBatches

    src, tgt = lengths(300)
    ds = {"src_len": src.tolist(), "tgt_len": tgt.tolist()}
    shards = [TrainBatches(ds, BatchPlan(500, seed=3, rank=r, world=2)).epoch(0) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    ids = [set(np.concatenate(s).tolist()) for s in shards]
    assert not ids[0] & ids[1]


def reference_cuts(src, tgt, max_tokens, rng):
    """The greedy per-pair loop that `bucket_batches` vectorises."""
    longest = np.maximum(src, tgt)
    idx = rng.permutation(len(src))
    idx = idx[np.lexsort((src[idx], tgt[idx], longest[idx]))]
    batches, start, width = [], 0, 0
    for i, n in enumerate(longest[idx].tolist()):
        width = max(width, n)
        if width * (i - start + 1) > max_tokens and i > start:
            batches.append(idx[start:i])
            start, width = i, n
    batches.append(idx[start:])
    return [batches[i] for i in rng.permutation(len(batches))]


def test_vectorised_schedule_equals_the_per_pair_loop():
    src, tgt = lengths(20_000, seed=5)
    src[:3] = 900  # longer than the budget: batches of one
    for max_tokens in (50, 600, 4096):
        a = bucket_batches(src, tgt, max_tokens, np.random.default_rng([3, 1]))
        b = reference_cuts(src, tgt, max_tokens, np.random.default_rng([3, 1]))
        assert len(a) == len(b)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_arrow_reads_equal_python_collate(toy_data_dir):
    from nmt.batching import BatchPlan, TrainBatches
    from nmt.datadir import load_encoded

    ds = load_encoded(toy_data_dir, "train")
    batches = TrainBatches(ds, BatchPlan(300, seed=1))
    assert batches.src_len.tolist() == ds["src_len"][:]
    for idx in batches.epoch(0)[:5]:
        rows = ds[idx.tolist()]
        expected = collate(rows["src_ids"], rows["tgt_ids"], "cpu")
        (got,), n_tokens = batches.read(idx)
        assert n_tokens == batches.target_tokens(idx) == int((expected[2] != 0).sum())
        assert same_batch(got, expected)


def test_prefetcher_yields_the_schedule_in_order_from_any_start(toy_data_dir):
    from nmt.batching import BatchPlan, Prefetcher, TrainBatches
    from nmt.datadir import load_encoded

    batches = TrainBatches(load_encoded(toy_data_dir, "train"), BatchPlan(300, seed=1))
    schedule = batches.epoch(2)
    for start in (0, 7):
        pre = Prefetcher(batches, schedule, start, "cpu", depth=2)
        for idx in schedule[start:]:
            (got,), n = pre.take(idx)
            (want,), m = batches.read(idx)
            assert n == m and same_batch(got, want)
        pre.close()
    pre = Prefetcher(batches, schedule, 0, "cpu", depth=2)  # stopped early: the thread ends
    pre.take(schedule[0])
    pre.close()
    assert not pre.thread.is_alive()


def test_prefetcher_refuses_an_out_of_order_batch(toy_data_dir):
    from nmt.batching import BatchPlan, Prefetcher, TrainBatches
    from nmt.datadir import load_encoded

    batches = TrainBatches(load_encoded(toy_data_dir, "train"), BatchPlan(300, seed=1))
    schedule = batches.epoch(0)
    pre = Prefetcher(batches, schedule, 0, "cpu")
    with pytest.raises(RuntimeError, match="out of order"):
        pre.take(schedule[1])
    pre.close()


def test_chunked_rows_gather_across_chunks_and_slices():
    """Rows spread over many chunks (as in a big memory-mapped split), including sliced chunks
    and empty rows, come back in the order asked, equal to plain Python indexing."""
    import pyarrow as pa

    from nmt.batching import ChunkedRows

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50, rng.integers(0, 6)).tolist() for _ in range(300)]
    full = pa.array(rows, type=pa.list_(pa.int32()))
    cuts = [0, 7, 8, 90, 91, 200, 300]  # uneven chunks, one of a single row
    column = pa.chunked_array([full.slice(a, b - a) for a, b in zip(cuts, cuts[1:])])
    assert column.num_chunks == 6
    gather = ChunkedRows(column)
    for idx in (rng.permutation(300)[:37], np.array([299, 0, 7, 7, 90]), np.arange(300)):
        vals, lens = gather.take(idx)
        assert lens.tolist() == [len(rows[i]) for i in idx]
        assert vals.tolist() == [x for i in idx for x in rows[i]]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_released_pages_of_the_mapped_split_read_back_the_same(toy_data_dir):
    """The split's own Arrow mappings are found and released; reads after a release (the pages
    fault back in from the file) give the same batches."""
    from nmt.batching import BatchPlan, TrainBatches
    from nmt.datadir import load_encoded

    batches = TrainBatches(load_encoded(toy_data_dir, "train"), BatchPlan(300, seed=1))
    assert batches.pages.ranges  # read-only mappings of the split's .arrow files
    order = batches.epoch(0)[:3]
    before = [batches.read(idx) for idx in order]
    batches.pages.release()
    after = [batches.read(idx) for idx in order]
    for (a,), _ in before:
        (b,), _ = after.pop(0)
        assert same_batch(a, b)
