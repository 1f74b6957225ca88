"""Value checks that every typed config shares, each failure a one-line error naming the key;
and `flag`, the metadata that gives a typed field its command-line flag (`nmt.cli` reads it)."""

from __future__ import annotations

from nmt.errors import NMTError


def flag(name: str, help: str, short: str | None = None, shown=None) -> dict:
    """A field's command-line flag: its name (NAME/OTHER for a pair of switches), short name,
    help, and the default it shows where the field's own (None) depends on other options."""
    return {"flag": name, "short": short, "help": help} | ({"shown": shown} if shown else {})


def choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NMTError(f"{name}={value!r} is not one of: {', '.join(choices)}")


def positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise NMTError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def probability(name: str, value: float) -> None:
    """A rate in [0, 1), such as dropout."""
    if not 0 <= value < 1:
        raise NMTError(f"{name} must be in [0, 1), got {value}")
