"""The export dir's format: `nmt-export.json`, the manifest every `nmt export` dir carries.

The manifest names the dir's `format` (which runtime opens it: `nmt.runtimes.RUNTIMES`), the
model's config (its decode section included), languages and calibration, and every file of the
dir with the SentencePiece models' digests; `read_manifest` checks them at every load. Written by
`nmt.export` through `write_manifest`. Free of torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nmt.errors import NMTError

MANIFEST = "nmt-export.json"
MANIFEST_VERSION = 1
CTRANSLATE2 = "nmt-ctranslate2"  # the format of a CTranslate2 model dir (`nmt.ct2` runs it)


def write_manifest(export_dir: Path, format: str, protos: dict[str, bytes], fields: dict) -> dict:
    """Write the SentencePiece model(s) (`protos`: file name -> bytes) and the manifest of an
    export dir of `format`, listing every file of the dir; returns the manifest."""
    d = Path(export_dir)
    for name, proto in protos.items():
        (d / name).write_bytes(proto)
    manifest = {
        "format": format,
        "version": MANIFEST_VERSION,
        **fields,
        "spm": {name: hashlib.sha256(proto).hexdigest() for name, proto in protos.items()},
    }
    manifest["files"] = sorted(p.name for p in d.iterdir()) + [MANIFEST]
    (d / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


MAX_SPM_BYTES = 64 << 20  # a SentencePiece model is a few MB: a larger "model" is no export's


def _corrupt(d: Path) -> NMTError:
    return NMTError(f"{d / MANIFEST}: corrupt manifest; re-run nmt export")


def _file_names(names) -> bool:
    """Whether `names` are plain names of files inside the dir (no path, no parent)."""
    return isinstance(names, list | dict) and all(
        isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n
        for n in names
    )


def _load(d: Path) -> dict:
    if not (d / MANIFEST).is_file():
        raise NMTError(
            f"{d}: not an nmt export directory (no {MANIFEST}); make one with: "
            f"nmt export CHECKPOINT -o {d}"
        )
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, OSError):
        raise _corrupt(d) from None
    shapes = isinstance(manifest, dict) and (
        isinstance(manifest.get("format"), str)
        and _file_names(manifest.get("files"))
        and _file_names(manifest.get("spm"))
        and bool(manifest["spm"])
        and all(isinstance(h, str) for h in manifest["spm"].values())
        and isinstance(manifest.get("config"), dict)  # what a runtime builds the config from
        and isinstance(manifest.get("calibration"), dict | None)
        and all(isinstance(manifest.get(k), str | None) for k in ("src_lang", "tgt_lang"))
    )
    if not shapes:
        raise _corrupt(d)
    return manifest


def export_format(export_dir: Path) -> str:
    """The format an export dir declares (an error when it is no export dir)."""
    return _load(Path(export_dir))["format"]


def read_manifest(export_dir: Path) -> dict:
    """The manifest of an export dir, after checking that every file it lists is there intact."""
    d = Path(export_dir)
    manifest = _load(d)
    missing = [f for f in manifest["files"] if not (d / f).is_file()]
    if missing:
        raise NMTError(f"{d}: export is incomplete, {missing[0]} is missing; re-run nmt export")
    for name, digest in manifest["spm"].items():
        path = d / name
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SPM_BYTES:
            raise _corrupt(d)  # only the dir's own regular files, read within a bound
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise NMTError(
                f"{d / name}: SentencePiece model does not match the exported model "
                "(the file was replaced); re-run nmt export"
            )
    return manifest
