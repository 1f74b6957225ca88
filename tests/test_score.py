"""`nmt score`: forced decoding equals the search's scores and the training loss; both engines."""

from __future__ import annotations

import pytest
import torch

from nmt.runtimes import Translator
from nmt.search_options import SearchOptions
from tests.conftest import nmt, one_line_error


@pytest.fixture(scope="module")
def pairs(trained):
    data = trained / "data"
    return data / "test.src", data / "test.tgt", trained / "run" / "best.pt"


def test_scores_are_the_teacher_forced_loss(pairs):
    from nmt.batching import collate

    src_file, tgt_file, ckpt = pairs
    srcs, tgts = src_file.read_text().splitlines()[:8], tgt_file.read_text().splitlines()[:8]
    t = Translator.load(ckpt)
    scores = t.score(srcs, tgts)
    for s, y, sc in zip(srcs, tgts, scores):
        src, tgt_in, tgt_out, _ = collate(
            t.tokenizer.encode_src([s]), t.tokenizer.encode_tgt([y]), "cpu"
        )
        with torch.no_grad():
            loss = t.model(src, tgt_in, tgt_out).item()  # summed, no label smoothing
        assert sc.total == pytest.approx(-loss, abs=1e-4)
        assert sc.tokens == tgt_out.size(1) and sc.mean == pytest.approx(sc.total / sc.tokens)


def test_every_nbest_hypothesis_scores_what_the_search_said(pairs):
    src_file, _, ckpt = pairs
    srcs = src_file.read_text().splitlines()[:20]
    t = Translator.load(ckpt)
    out = t.translate_detailed(srcs, SearchOptions(beam=5, n_best=5, alpha=0.0, attention=True))
    every = [(s, h) for s, hs in zip(srcs, out) for h in hs if h.ended]
    # a text is scored as SentencePiece spells it: a hypothesis the search spelled otherwise
    # (same text, other pieces) is another token sequence with its own probability
    tok = t.tokenizer
    hyps = [
        (s, h) for s, h in every if tok.tgt_pieces(tok.encode_tgt([h.text])[0]) == h.tgt_pieces[:-1]
    ]
    scores = t.score([s for s, _ in hyps], [h.text for _, h in hyps])
    assert len(hyps) > 50 and len(hyps) >= 0.5 * len(every)
    for (_, h), sc in zip(hyps, scores):
        assert sc.total == pytest.approx(h.score, abs=1e-4)


def test_the_export_scores_like_torch(pairs, tmp_path):
    pytest.importorskip("ctranslate2")
    from nmt.export import export

    src_file, tgt_file, ckpt = pairs
    export(ckpt, tmp_path / "ct2")
    srcs, tgts = src_file.read_text().splitlines(), tgt_file.read_text().splitlines()
    a = Translator.load(ckpt).score(srcs, tgts)
    b = Translator.load(tmp_path / "ct2").score(srcs, tgts)
    assert max(abs(x.total - y.total) for x, y in zip(a, b)) < 1e-3
    assert [x.tokens for x in a] == [y.tokens for y in b]


def test_cli_files_stdin_and_mismatched_counts(pairs, tmp_path):
    src_file, tgt_file, ckpt = pairs
    by_files = nmt("score", "-c", ckpt, src_file, tgt_file).stdout.splitlines()
    tsv = "".join(f"{s}\t{t}\n" for s, t in zip(src_file.read_text().splitlines(),
                                                 tgt_file.read_text().splitlines()))  # fmt: skip
    assert nmt("score", "-c", ckpt, input=tsv).stdout.splitlines() == by_files
    total, mean, n = by_files[0].split("\t")
    assert float(total) < 0 and float(mean) == pytest.approx(float(total) / int(n), abs=1e-5)
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    # the line counts are checked before any work: even the checkpoint is not opened
    res = nmt("score", "-c", tmp_path / "missing.pt", src_file, short, check=False)
    one_line_error(res, "has 50 lines", "has 1")
    res = nmt("score", "-c", ckpt, input="no tab here\n", check=False)
    one_line_error(res, "<stdin>:1: 1 tab-separated fields")


def test_a_source_over_the_limit_is_truncated_with_the_warning_translate_gives(
    tiny_checkpoint, tmp_path
):
    """Field report (sockeye PR#593's class): score truncated a long source silently."""
    from nmt.checkpoint import read

    limit = read(tiny_checkpoint).config.model.max_len
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    src.write_text("red cat\n" + "red " * (limit + 20) + "\n")
    tgt.write_text("cat red\nred\n")
    scored = nmt("score", "-c", tiny_checkpoint, src, tgt)
    translated = nmt("translate", "-c", tiny_checkpoint, src)
    note = f"line 2: {limit + 21} source tokens, truncated to the model's limit of {limit}"
    assert f"warning: {note}" in scored.stderr and f"warning: {note}" in translated.stderr
    assert len(scored.stdout.splitlines()) == 2
