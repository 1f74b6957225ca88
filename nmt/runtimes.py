"""Opening a translator: a checkpoint file runs on torch, an `nmt export` dir on CTranslate2."""

from __future__ import annotations

from pathlib import Path

from nmt.translator import RuntimeOptions, TranslatorBase


def open_translator(path: str | Path, runtime: RuntimeOptions = RuntimeOptions()) -> TranslatorBase:
    """The translator for `path`: a directory is an export dir (its manifest is checked) run on
    CTranslate2 without importing torch; anything else is a torch checkpoint."""
    if Path(path).is_dir():
        from nmt.ct2 import CT2Translator  # lazy: keeps torch-free start-up free of ctranslate2 too

        return CT2Translator.open(path, runtime)
    from nmt.torch_translator import TorchTranslator  # lazy: torch loads only for checkpoints

    return TorchTranslator.open(path, runtime)


class Translator(TranslatorBase):
    """`Translator.load(path)`: `open_translator` under the name the Python API has always had."""

    @staticmethod
    def load(path: str | Path, device: str = "cpu", threads: int = 0) -> TranslatorBase:
        return open_translator(path, RuntimeOptions(device, threads))
