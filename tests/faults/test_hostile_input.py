"""Hostile input, property-based: whatever the bytes, translate gives one output line per input
line, in order, blank for blank (Translator.translate, `nmt translate` on a file and on stdin).

In-process runs use a model that copies its source, so the expected line for each input is
known exactly; real-CLI runs use a trained checkpoint and check counts and blanks.
Slow: `make test-faults`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nmt import translate
from nmt.runtimes import Translator
from nmt.search_options import SearchOptions
from nmt.tokenizer import EOS_ID
from nmt.torch_translator import TorchTranslator
from nmt.translate import TranslateIO, run_translation

pytestmark = pytest.mark.faults

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
EXAMPLES = int(os.environ.get("FAULTS_EXAMPLES", "150"))
CLI_EXAMPLES = int(os.environ.get("FAULTS_CLI_EXAMPLES", "8"))
CHECKED = {"inputs": 0, "lines": 0}

ODD = [
    "\x00", "\r", "\u2028", "\u2029", "\ufeff", "\u200b", "\u200f", "\u202e", "\x85", "\x0b",
    "\x0c", "\x1c", "\x1e", "\t", " ", "\u3000", "😀", "👨‍👩‍👧", "עברית", "مرحبا", "e\u0301",
    "red", "cat", "blue dog",
]  # fmt: skip
piece = st.one_of(
    st.sampled_from(ODD),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12),
)
line = st.one_of(
    st.lists(piece, max_size=8).map("".join),
    st.just(""),
    st.integers(1000, 20_000).map(lambda n: "red cat " * (n // 8)),  # long lines
)
lines = st.one_of(
    st.lists(line, max_size=30),
    st.lists(st.sampled_from(["", " ", "\r", "red cat"]), min_size=50, max_size=3000),  # runs
)
documents = st.tuples(lines, st.booleans())  # (lines, ends with a newline)


def as_bytes(doc) -> bytes:
    body, final = doc
    text = "\n".join(body) + ("\n" if final and body else "")
    return text.encode("utf-8")


def input_lines(data: bytes) -> list[str]:
    """What `nmt translate` calls the lines of its input: split on \\n only."""
    return [raw.decode("utf-8").rstrip("\r\n") for raw in io.BytesIO(data)]


class CopyModel(torch.nn.Module):
    """Keeps the model contract and emits its source, token by token, then EOS."""

    has_attention = True

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def encode(self, src, src_mask, src_lengths=None):
        return {"src": src, "src_mask": src_mask}

    def init_cache(self, encoded):
        return {"t": torch.zeros(encoded["src"].size(0), 1, dtype=torch.long)}

    def decode(self, tgt_in, encoded, cache=None):
        t = cache["t"][:, 0] if cache is not None else torch.zeros(len(tgt_in), dtype=torch.long)
        src = torch.cat([encoded["src"], torch.full_like(encoded["src"][:, :1], EOS_ID)], 1)
        nxt = src.gather(1, t.clamp(max=src.size(1) - 1)[:, None])[:, 0]
        logits = torch.full((len(tgt_in), 1, self.vocab), -1e9)
        logits[torch.arange(len(tgt_in)), 0, nxt] = 0.0
        attn = encoded["src_mask"].float()[:, None, :]
        return logits, attn, None if cache is None else {"t": cache["t"] + 1}


@pytest.fixture(scope="module")
def copier(tiny_checkpoint):
    real = Translator.load(tiny_checkpoint)
    model = CopyModel(real.tokenizer.tgt_vocab_size)
    return TorchTranslator(model, real.tokenizer, real.cfg, torch.device("cpu"))


def expected(translator: TorchTranslator, text: str) -> str:
    """The copy model's translation of one line: its source pieces, truncated like the input."""
    if not text.strip():
        return ""
    ids = translator.tokenizer.encode_src([text.strip()])[0][:-1][: translator.max_len - 1]
    return translator.tokenizer.decode_tgt(ids)


def check(translator, inputs: list[str], outputs: list[str]) -> None:
    assert len(outputs) == len(inputs)
    for i, (src, out) in enumerate(zip(inputs, outputs)):
        assert out == expected(translator, src), f"line {i + 1}"
    CHECKED["inputs"] += 1
    CHECKED["lines"] += len(inputs)


QUICK = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


LONGEST = (["blue dog", "red cat " * 12_500, "", "\r"], False)  # a 100k-character line


@QUICK
@given(doc=documents)
@example(doc=LONGEST)
def test_translator_translate_keeps_every_line(copier, doc):
    inputs = input_lines(as_bytes(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation warnings: tested elsewhere
        check(copier, inputs, copier.translate(inputs, beam=2))


@QUICK
@given(doc=documents)
@example(doc=LONGEST)
def test_translate_file_and_stdin_keep_every_line(copier, doc, tmp_path_factory, monkeypatch):
    data = as_bytes(doc)
    tmp = tmp_path_factory.mktemp("hostile")
    src, out = tmp / "in.txt", tmp / "out.txt"
    src.write_bytes(data)
    monkeypatch.setattr(translate, "open_translator", lambda *a, **k: copier)
    n = run_translation(src, TranslateIO([src], out), SearchOptions(beam=1), log=lambda m: None)
    written = out.read_bytes().decode("utf-8")
    assert written.count("\n") == n == len(input_lines(data))
    check(copier, input_lines(data), written.split("\n")[:-1] if n else [])
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    monkeypatch.setattr(sys, "stdout", stdout)
    run_translation(src, TranslateIO(), SearchOptions(beam=1), log=lambda m: None)
    assert stdout.getvalue() == written


@settings(max_examples=CLI_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=documents)
def test_the_real_cli_keeps_every_line(tiny_checkpoint, doc, tmp_path_factory):
    data = as_bytes(doc)
    tmp = tmp_path_factory.mktemp("cli")
    src, out = tmp / "in.txt", tmp / "out.txt"
    src.write_bytes(data)
    cmd = [sys.executable, "-m", "nmt", "translate", "-c", str(tiny_checkpoint), "-q", "-b", "2"]
    res = subprocess.run(cmd + [str(src), "-o", str(out)], env=ENV, capture_output=True)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    piped = subprocess.run(cmd, input=data, env=ENV, capture_output=True)
    assert piped.returncode == 0, piped.stderr.decode()[-2000:]
    assert piped.stdout == out.read_bytes()
    inputs, outputs = input_lines(data), out.read_bytes().decode("utf-8").split("\n")
    assert outputs[-1] == "" and len(outputs) - 1 == len(inputs)
    for src_line, out_line in zip(inputs, outputs):
        assert "\r" not in out_line
        if not src_line.strip():
            assert out_line == ""
    CHECKED["inputs"] += 1
    CHECKED["lines"] += len(inputs)


def test_report_what_was_checked():
    print(f"\nhostile input: {CHECKED['inputs']} inputs, {CHECKED['lines']} lines checked")
