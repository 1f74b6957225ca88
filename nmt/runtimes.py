"""Opening a translator: a checkpoint file runs on torch, an `nmt export` dir on CTranslate2."""

from __future__ import annotations

from pathlib import Path

from nmt.errors import NMTError
from nmt.translator import RuntimeOptions, TranslatorBase


def open_translator(
    path: str | Path | list, runtime: RuntimeOptions = RuntimeOptions()
) -> TranslatorBase:
    """The translator for `path`: a directory is an export dir (its manifest is checked) run on
    CTranslate2 without importing torch; anything else is a torch checkpoint. A list of
    checkpoints decodes as an ensemble (CTranslate2 runs one model at a time)."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise NMTError("no checkpoint given")
    if any(Path(p).is_dir() for p in paths):
        if len(paths) > 1:
            raise NMTError(
                "an export dir decodes alone (CTranslate2 has no ensembles): give several "
                "torch checkpoints (-c a.pt -c b.pt) to decode as an ensemble"
            )
        from nmt.ct2 import CT2Translator  # lazy: keeps torch-free start-up free of ctranslate2 too

        return CT2Translator.open(paths[0], runtime)
    from nmt.torch_translator import TorchTranslator  # lazy: torch loads only for checkpoints

    return TorchTranslator.open(paths, runtime)


class Translator(TranslatorBase):
    """`Translator.load(path)`: `open_translator` under the name the Python API has always had."""

    @staticmethod
    def load(path: str | Path | list, device: str = "cpu", threads: int = 0) -> TranslatorBase:
        return open_translator(path, RuntimeOptions(device, threads))
