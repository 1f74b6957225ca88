"""The architecture's rules: format knowledge with its owner, a torch-free config, the layers.

`make test` runs import-linter; this file checks what it cannot."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.datadir import Meta

PACKAGE = Path(__file__).resolve().parent.parent / "nmt"

# literal -> the module that owns it: file names, checkpoint keys, special-token strings
OWNERS = {
    "meta.json": "datadir.py",
    "spm.model": "datadir.py",
    "spm.src.model": "datadir.py",
    "spm.tgt.model": "datadir.py",
    "last.pt": "checkpoint.py",
    "best.pt": "checkpoint.py",
    "step-": "checkpoint.py",
    "nmt-export.json": "export_dir.py",
    "nmt-ctranslate2": "export_dir.py",
    "train.log": "runlog.py",
    "metrics.jsonl": "runlog.py",
    "summary.json": "runlog.py",
    "config.yaml": "runlog.py",
    "results.json": "runlog.py",
    "test.hyp": "runlog.py",
    "dataset_info.json": "datadir.py",
    "data-00000-of-00001.arrow": "datadir.py",
    "</s>": "tokenizer.py",
    "<s>": "tokenizer.py",
}
CHECKPOINT_KEYS = ("optimizer", "scheduler", "rng", "progress", "tokenizer", "averaged_from")
# meta.json keys (fields of `datadir.Meta`) but those that also name a key of another format
# (a checkpoint's data, results.json, the export manifest) or a field of `PreprocessOptions`
SHARED_NAMES = {"format", "src_lang", "tgt_lang", "joint_vocab", "pairs", "options", "sources",
                "spm_model"}  # fmt: skip
META_KEYS = {f.name for f in dataclasses.fields(Meta)} - SHARED_NAMES


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants of a module except docstrings (they may name a file to explain it)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def test_format_knowledge_lives_with_its_owner():
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, value in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            for literal, owner in OWNERS.items():
                if literal in value and rel != owner:
                    stray.append(f"{rel}:{line}: {literal!r} (owned by {owner})")
            if value in CHECKPOINT_KEYS and rel != "checkpoint.py":
                stray.append(f"{rel}:{line}: checkpoint key {value!r} (owned by checkpoint.py)")
            if value in META_KEYS and rel != "datadir.py":
                stray.append(f"{rel}:{line}: meta.json key {value!r} (owned by datadir.py)")
    assert not stray, "\n".join(stray)


def test_meta_keys_are_checked():
    assert {"counts", "fingerprint", "pair_rows", "spm_reference"} <= META_KEYS


def test_the_check_finds_a_stray_literal():
    tree = ast.parse('"""Reads best.pt."""\nNAME = "best.pt"\n')
    assert _strings(tree) == [(2, "best.pt")]


def _imports_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import nmt.config; nmt.config.load_config(None, ['model.backend=rnn'])",
        "import nmt.search_options; nmt.search_options.SearchOptions(beam=4)",
        "import nmt.translator",
        "import nmt.ct2",
    ],
)
def test_config_decode_options_and_ct2_runtime_import_no_torch(code):
    assert "torch" not in _imports_after(code)


def test_the_cli_starts_without_torch_numpy_or_sentencepiece():
    loaded = _imports_after("import nmt.cli")
    assert not loaded & {"torch", "numpy", "sentencepiece"}
