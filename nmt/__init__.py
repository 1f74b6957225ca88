"""nmt: sequence-to-sequence translation with RNN, RNN+attention and Transformer backends."""

__version__ = "0.1.0"
__all__ = ["Translator", "open_translator", "NMTError"]

from nmt.errors import NMTError


def __getattr__(name: str):
    # Lazy: `import nmt` stays light so the CLI starts fast; torch loads on first use.
    if name in ("Translator", "open_translator"):
        from nmt import runtimes

        return getattr(runtimes, name)
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
