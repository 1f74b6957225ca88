"""Inference batches, for both runtimes: sentences sorted by length and cut into runs whose padded
size (count x widest) stays within a token budget. Free of torch and numpy (the CTranslate2 path
starts without them); training's shuffled buckets are `nmt.batching.bucket_batches`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def length_batches(
    widths: Sequence[int],
    budget: int,
    order: Sequence[int] | None = None,
    keys: Sequence | None = None,
) -> Iterator[list[int]]:
    """Index runs over `order` (default: by width, ties in input order; any order must put
    widths in ascending order): a run grows while its count times the widest width fits
    `budget` (a single wider item is a run of its own); with `keys`, a run's items share
    their key."""
    if order is None:
        order = sorted(range(len(widths)), key=widths.__getitem__)
    batch: list[int] = []
    for i in order:
        if batch and (
            (keys is not None and keys[i] != keys[batch[0]])
            or widths[i] * (len(batch) + 1) > budget
        ):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
