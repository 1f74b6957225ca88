"""Opening a translator: the runtime is chosen by what the path is, from one table (`RUNTIMES`):
a checkpoint file runs on torch, an export dir on the runtime its manifest's format names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nmt.errors import NMTError
from nmt.export_dir import CTRANSLATE2, export_format
from nmt.translator import RuntimeOptions, TranslatorBase

CHECKPOINT = "checkpoint"  # what a file is: a torch checkpoint (one, or several: an ensemble)


def _torch(paths: list, runtime: RuntimeOptions) -> TranslatorBase:
    from nmt.torch_translator import TorchTranslator  # lazy: torch loads only for checkpoints

    return TorchTranslator.open(paths, runtime)


def _ctranslate2(paths: list, runtime: RuntimeOptions) -> TranslatorBase:
    from nmt.ct2 import CT2Translator  # lazy: keeps torch-free start-up free of ctranslate2 too

    return CT2Translator.open(paths[0], runtime)


# what a path is -> how to open it; an export dir is keyed by its manifest's format
RUNTIMES: dict[str, Callable[[list, RuntimeOptions], TranslatorBase]] = {
    CHECKPOINT: _torch,
    CTRANSLATE2: _ctranslate2,
}


def kind_of(path: str | Path) -> str:
    """What `path` is: a checkpoint file, or an export dir's declared format."""
    path = Path(path)
    return export_format(path) if path.is_dir() else CHECKPOINT


def open_translator(
    path: str | Path | list, runtime: RuntimeOptions = RuntimeOptions()
) -> TranslatorBase:
    """The translator for `path` (a list of checkpoints decodes as an ensemble), opened by the
    runtime `RUNTIMES` gives for its kind; an unknown export format is a one-line error."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise NMTError("no checkpoint given")
    if len(paths) > 1 and any(Path(p).is_dir() for p in paths):
        raise NMTError(
            "an export dir decodes alone (CTranslate2 has no ensembles): give several "
            "torch checkpoints (-c a.pt -c b.pt) to decode as an ensemble"
        )
    kinds = [kind_of(p) for p in paths]
    for p, kind in zip(paths, kinds):
        if kind not in RUNTIMES:
            raise NMTError(
                f"{p}: an export of format {kind!r}, which this nmt cannot run (it runs: "
                f"{', '.join(k for k in RUNTIMES if k != CHECKPOINT)}); re-export it"
            )
    return RUNTIMES[kinds[0]](paths, runtime)


class Translator(TranslatorBase):
    """`Translator.load(path)`: `open_translator` under the name the Python API has always had."""

    @staticmethod
    def load(path: str | Path | list, device: str = "cpu", threads: int = 0) -> TranslatorBase:
        return open_translator(path, RuntimeOptions(device, threads))
