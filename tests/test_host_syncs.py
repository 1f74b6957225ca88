"""A training step never makes the host wait for the device between log steps.

On a GPU every read-back (`.item()`, `bool(t)`, `.tolist()`, `nonzero`, boolean-mask indexing)
stops the host until the queued kernels finish. These tests run the real `Trainer` step on the
CPU under `nmt.syncs.HostSyncs`, on the GPU's code path, and fail on any read-back.
"""

import time

import pytest
import torch

from nmt import syncs
from nmt.models import base
from nmt.models.backends import BACKENDS
from nmt.training import Trainer
from tests.test_training import tiny_cfg

# The CPU's dropout draws its masks on the host by design (`nmt.models.base.random_int16`, one
# seed read from torch's CPU generator); a GPU draws them with F.dropout.
HOST_ONLY = "in random_int16)"


def device_syncs(found: list[str]) -> set[str]:
    return {f for f in found if not f.endswith(HOST_ONLY)}


def test_the_recorder_sees_each_kind_of_read_back():
    x = torch.randn(6)
    with syncs.HostSyncs() as rec:
        x.sum().item()
        bool(x.max() > 0)
        x.tolist()
        x.nonzero()
        x[x > 0]
        y = x.clone()
        y[x < 0] = 0
        (x * 2 + 1).sum()  # no read-back
    kinds = [f.split(" (")[0] for f in rec.found]
    assert len(kinds) == 6
    assert kinds[:3] == ["Tensor.item", "Tensor.__bool__", "Tensor.tolist"]
    assert kinds[4:] == [
        "Tensor.__getitem__ with a boolean mask",
        "Tensor.__setitem__ with a boolean mask",
    ]


@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_training_step_reads_nothing_back(toy_data_dir, tmp_path, monkeypatch, backend, accum):
    monkeypatch.setattr(base, "drops_padding", lambda device: False)  # the GPU's path
    cfg = tiny_cfg(
        toy_data_dir,
        f"model.backend={backend}",
        f"train.accum={accum}",
        "train.clip_norm=1.0",
        "train.ema_decay=0.99",
        "train.label_smoothing=0.1",
        "train.log_every=4",
        "train.valid_every=100",
        "train.max_tokens=200",
    )
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.run_t0 = time.time()
    trainer.model.train()
    groups = trainer.batch_groups()
    found = set()
    for step in range(1, 5):  # step 1 and step 4 log: they read the losses back
        group, n_tokens = next(groups)
        if step in (1, 4):
            trainer.after_step(*trainer.step(group, n_tokens), accum)
            continue
        with syncs.HostSyncs() as rec:
            trainer.after_step(*trainer.step(group, n_tokens), accum)
        found |= device_syncs(rec.found)
    groups.close()
    assert not found, found
    assert [s for s, _ in trainer.losses] == [1, 2, 3, 4]  # every step's loss, read at step 4
    assert all(loss > 0 for _, loss in trainer.losses)
