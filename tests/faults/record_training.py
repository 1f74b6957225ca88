"""Run `nmt train` in this process, appending each step's exact loss to a file, and optionally
SIGKILL this process at a chosen point of a checkpoint write (the kill -9 suite's driver).

    python -m tests.faults.record_training LOSSES KILL -- TRAIN_ARGS...

KILL is "none", or "NAME:N:WHERE": at the N-th write of NAME (step-K.pt, best.pt or last.pt;
"step" matches every step checkpoint) die in WHERE: "write" (temp file half written),
"rename" (temp complete, not yet renamed) or "link" (last.pt's hard link about to replace it).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(spec: str) -> None:
    import torch

    from nmt import checkpoint, files

    name, nth, where = spec.split(":")
    seen = {"n": 0}

    def matches(path: Path) -> bool:
        target = path.name if not path.name.startswith(".") else path.name[1:].split(".tmp-")[0]
        hit = target.startswith("step-") if name == "step" else target == name
        if hit:
            seen["n"] += 1
        return hit and seen["n"] == int(nth)

    if where == "write":
        real_save = torch.save

        def half_save(obj, f, *a, **kw):
            if matches(Path(f.name)):
                f.write(b"PK\x03\x04 half a checkpoint")
                f.flush()
                die()
            return real_save(obj, f, *a, **kw)

        torch.save = half_save
    elif where == "rename":
        real_replace = files.os.replace

        def replace_or_die(src, dst):
            if matches(Path(dst)):
                die()
            return real_replace(src, dst)

        files.os.replace = replace_or_die
    elif where == "link":
        real_link = checkpoint.link

        def link_or_die(src, dst):
            if matches(Path(dst)):
                die()
            return real_link(src, dst)

        checkpoint.link = link_or_die


def main() -> None:
    losses, kill, sep, *args = sys.argv[1:]
    assert sep == "--"
    from nmt import training

    if kill != "none":
        install_kill(kill)
    out = open(losses, "a")
    after_step = training.Trainer.after_step

    def recording(self, loss_sum, n_tok, n_batches):
        out.write(f"{self.progress.step + 1} {float(loss_sum) / max(n_tok, 1)!r}\n")
        out.flush()
        return after_step(self, loss_sum, n_tok, n_batches)

    training.Trainer.after_step = recording
    from nmt.cli import main as cli_main

    sys.argv = ["nmt", "train", *args]
    cli_main()


if __name__ == "__main__":
    main()
