"""`nmt export` to CTranslate2: exact against torch, every quantization, bad input, the CLI path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt import checkpoint
from nmt.errors import NMTError
from nmt.export import QUANTIZATIONS, export
from nmt.runtimes import Translator
from nmt.search_options import SearchOptions
from nmt.tokenizer import train_sentencepiece
from tests.conftest import ENV, nmt, one_line_error, reverse_pairs

ctranslate2 = pytest.importorskip("ctranslate2")  # the [ct2] extra; `make install` installs it

from nmt.ct2 import CT2Translator  # noqa: E402
from nmt.export_dir import MANIFEST  # noqa: E402


@pytest.fixture(scope="module")
def toy(trained, tmp_path_factory):
    """The Transformer trained on word reversal by the CLI tests, its float32 export, test data."""
    tmp = tmp_path_factory.mktemp("export")
    ckpt = trained / "run" / "best.pt"
    export(ckpt, tmp / "ct2")
    src = (trained / "data" / "test.src").read_text().splitlines()
    ref = (trained / "data" / "test.tgt").read_text().splitlines()
    data = trained / "data"
    return {"tmp": tmp, "ckpt": ckpt, "dir": tmp / "ct2", "data": data, "src": src, "ref": ref}


def both(toy, opts: SearchOptions):
    torch_out = Translator.load(toy["ckpt"]).translate_detailed(toy["src"], opts)
    ct2_out = CT2Translator.open(toy["dir"]).translate_detailed(toy["src"], opts)
    return torch_out, ct2_out


@pytest.mark.parametrize("limits", [(1.5, 10), (0.5, 1)])  # the second one cuts outputs short
def test_float32_greedy_is_identical_to_torch(toy, limits):
    """Identical outputs and scores, also where the per-sentence limit cuts hypotheses short
    (greedy batches mix limits; those that reach their own are decoded again under it)."""
    a, b = both(toy, SearchOptions(beam=1, max_len_a=limits[0], max_len_b=limits[1]))
    assert [x[0].text for x in a] == [y[0].text for y in b]
    assert max(abs(x[0].score - y[0].score) for x, y in zip(a, b)) < 1e-3
    if limits == (1.5, 10):
        assert sum(x[0].text == r for x, r in zip(a, toy["ref"])) > len(a) // 2  # trained


def test_greedy_batches_mix_source_lengths(toy, monkeypatch):
    """Greedy search fills batches across lengths (small int8 batches are slow); beam search
    keeps one limit per batch."""
    translator = CT2Translator.open(toy["dir"])
    calls = []
    real = CT2Translator._batch
    monkeypatch.setattr(
        CT2Translator,
        "_batch",
        lambda self, ids, o, lim: calls.append(len(ids)) or real(self, ids, o, lim),
    )
    lengths = {len(ids) for ids in translator.tokenizer.encode_src(toy["src"])}
    assert len(lengths) > 3
    translator.translate(toy["src"], beam=1)
    greedy_calls = len(calls)
    calls.clear()
    translator.translate(toy["src"], beam=2)
    assert greedy_calls < len(lengths) <= len(calls)


@pytest.mark.parametrize("limits", [(1.5, 10), (0.5, 1)])  # the second one cuts outputs short
def test_float32_beam5_matches_torch_with_scores_within_1e3(toy, limits):
    """Same best hypothesis as torch's beam search for (nearly) every sentence, and every score
    within 1e-3 of torch's score of that hypothesis. Where the two differ, torch found the better
    one: it searches until no alive beam can win, CTranslate2 stops once its best-scoring
    candidate and `beam` hypotheses have ended (a longer one alive may still win under the GNMT
    penalty, which CTranslate2 cannot rank by while searching)."""
    a, b = both(toy, SearchOptions(beam=5, max_len_a=limits[0], max_len_b=limits[1]))
    same = [x[0].text == y[0].text for x, y in zip(a, b)]
    assert sum(same) >= 0.95 * len(same)
    for x, y, eq in zip(a, b, same):
        if eq:
            assert abs(x[0].score - y[0].score) < 1e-3
        else:
            assert x[0].score > y[0].score - 1e-4


@pytest.mark.parametrize("beam", [1, 5])
def test_ngram_blocking_scores_like_torch(toy, beam):
    """A blocked token's probability goes to the others (blocking before the softmax), as in
    CTranslate2: the same outputs and scores (torch blocked after the softmax, and the engines
    disagreed on 20 of 200 lines at beam 5)."""
    a, b = both(toy, SearchOptions(beam=beam, no_repeat_ngram=2))
    same = [x[0].text == y[0].text for x, y in zip(a, b)]
    assert sum(same) >= 0.95 * len(same)
    for x, y, eq in zip(a, b, same):
        if eq:
            assert abs(x[0].score - y[0].score) < 1e-3


def test_int8_translates_a_sentence_the_same_in_any_batch(toy):
    """On int8 weights a sentence padded among longer ones scored (and now and then translated)
    differently than alone: batches hold one source length there."""
    export(toy["ckpt"], toy["tmp"] / "int8", quantization="int8")
    translator = CT2Translator.open(toy["tmp"] / "int8")
    assert translator.padding_sensitive
    for beam in (1, 3):
        opts = SearchOptions(beam=beam)
        together = translator.translate_detailed(toy["src"], opts)
        alone = [translator.translate_detailed([s], opts)[0] for s in toy["src"]]
        assert [(t[0].text, t[0].score) for t in together] == [
            (t[0].text, t[0].score) for t in alone
        ]


@pytest.mark.parametrize("beam", [1, 5])
def test_trust_flags_are_the_same_on_both_engines(toy, beam):
    a, b = both(toy, SearchOptions(beam=beam, max_len_a=0.5, max_len_b=1))  # some cut short
    pairs = [(x[0].flags, y[0].flags) for x, y in zip(a, b) if x[0].text == y[0].text]
    assert len(pairs) >= 0.95 * len(a) and any("cut" in f["flags"] for f, _ in pairs)
    for f, g in pairs:
        assert f["calibrated"] and g["calibrated"]  # the export carries the calibration
        assert {k: v for k, v in f.items() if k != "mean_logprob"} == {
            k: v for k, v in g.items() if k != "mean_logprob"
        }
        assert f["mean_logprob"] == pytest.approx(g["mean_logprob"], abs=1e-3)


def test_nbest_comes_ranked_with_scores(toy):
    a, b = both(toy, SearchOptions(beam=4, n_best=3, alpha=1.0))
    for x, y in zip(a, b):
        assert len(y) == 3 and [h.score for h in y] == sorted((h.score for h in y), reverse=True)
        if x[0].text == y[0].text:
            assert abs(x[0].score - y[0].score) < 1e-3
        else:  # see above: torch searched on where CTranslate2 stopped
            assert x[0].score > y[0].score - 1e-4


@pytest.mark.parametrize("beam", [1, 5])
def test_attention_rows_match_torch_cross_attention(toy, beam):
    a, b = both(toy, SearchOptions(beam=beam, attention=True))
    pairs = [(x[0], y[0]) for x, y in zip(a, b) if x[0].tgt_pieces == y[0].tgt_pieces]
    assert len(pairs) >= 0.95 * len(a)  # the rest: different hypotheses (see the beam test)
    for t, c in pairs:
        assert t.src_pieces == c.src_pieces
        n_src = len(t.src_pieces)  # torch's rows also span the batch's padding
        np.testing.assert_allclose(t.attention[:, :n_src].numpy(), c.attention, atol=1e-4)
        assert t.alignment() == c.alignment()


def test_every_quantization_this_cpu_runs_round_trips(toy):
    """Each quantization translates like float32: identical greedy output on at least 90 % of
    400 lines (on this toy model every line is identical; a BLEU difference bound sat on its
    threshold, since one changed line moves BLEU by ~0.2)."""
    supported = ctranslate2.get_supported_compute_types("cpu")
    src, _ = zip(*reverse_pairs(400, 99))
    want = CT2Translator.open(toy["dir"]).translate(src, beam=1)
    tried = []
    for q in QUANTIZATIONS:
        if q not in supported:
            continue
        out = toy["tmp"] / f"ct2-{q}"
        export(toy["ckpt"], out, quantization=q)
        manifest = json.loads((out / MANIFEST).read_text())
        assert manifest["quantization"] == q
        hyps = CT2Translator.open(out).translate(src, beam=1)
        same = sum(h == w for h, w in zip(hyps, want)) / len(src)
        assert same >= 0.9, (q, same)
        tried.append(q)
    assert "int8" in tried and "float32" in tried


@pytest.mark.parametrize(
    "overrides",
    [{"norm": "post"}, {"positions": "learned"}, {"tie_embeddings": False}],
)
def test_architecture_variants_score_like_torch(toy, tmp_path, overrides):
    """Post-norm, learned positions, untied embeddings (random weights): CTranslate2's
    teacher-forced log-probabilities of the references equal torch's, token by token."""
    import dataclasses

    from nmt.models.backends import build_model
    from nmt.tokenizer import BOS_ID, EOS_ID

    state = checkpoint.read(toy["ckpt"])
    tok = state.tokenizer
    model_cfg = dataclasses.replace(state.config.model, **overrides)
    cfg = dataclasses.replace(state.config, model=model_cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint).eval()
    state.config, state.model = cfg, model.state_dict()
    checkpoint.save(state, tmp_path / "v.pt")
    export(tmp_path / "v.pt", tmp_path / "v")
    ct2 = CT2Translator.open(tmp_path / "v").model
    for s, r in zip(toy["src"][:8], toy["ref"][:8]):
        src, tgt = tok.encode_src([s])[0], tok.encode_tgt([r])[0]
        with torch.no_grad():
            logits = model(torch.tensor([src]), torch.tensor([[BOS_ID, *tgt]]))[0]
        want = logits.log_softmax(-1).gather(1, torch.tensor([*tgt, EOS_ID])[:, None])
        src_pieces = [tok.src.id_to_piece(i) for i in src]
        got = ct2.score_batch([src_pieces], [tok.tgt_pieces(tgt)])[0].log_probs
        np.testing.assert_allclose(got, want.squeeze(1).numpy(), atol=1e-4)


def test_cli_export_translate_and_evaluate(toy, tmp_path):
    out = tmp_path / "ct2"
    res = nmt("export", toy["ckpt"], "-o", out, "--quantization", "int8")
    assert "exported" in res.stderr and (out / MANIFEST).is_file()
    lines = toy["src"][:3]
    text = f"{lines[0]}\n\n{lines[1]}\n{lines[2]}\n"
    got = nmt("translate", "-c", toy["dir"], "--beam", "1", input=text).stdout.split("\n")
    want = Translator.load(toy["ckpt"]).translate([lines[0], "", lines[1], lines[2]], beam=1)
    assert got[:4] == want
    nb = nmt("translate", "-c", out, "--n-best", "2", input=lines[0] + "\n").stdout
    assert len(nb.rstrip("\n").split("\t")) == 4
    al = nmt(
        "translate",
        "-c",
        toy["dir"],
        "--alignment",
        "--attention-plot",
        tmp_path / "p",
        input=lines[0] + "\n",
    )
    assert "-" in al.stdout.split("\t")[1] and (tmp_path / "p" / "line-000001.png").is_file()
    sampled = nmt(
        "translate", "-c", out, "--sample", "--top-p", "0.9", "--temperature", "0.8", input=text
    )
    assert len(sampled.stdout.split("\n")) == 5
    ev = nmt("evaluate", "-c", toy["dir"], "-d", toy["data"], "--beam", "1")
    assert "BLEU" in ev.stdout and "50 sentences" in ev.stdout


def test_the_exported_path_never_imports_torch(toy):
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nmt", "translate", "-c", toy["dir"]],
        input=toy["src"][0] + "\n",
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert res.returncode == 0 and res.stdout.strip()
    modules = [line.split("|")[-1].strip() for line in res.stderr.splitlines() if "|" in line]
    assert "ctranslate2" in modules
    assert not [m for m in modules if m.split(".")[0] == "torch"]


def test_interactive_buffer_answers_each_line_before_the_next(toy):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nmt",
            "translate",
            "-c",
            toy["dir"],
            "--buffer",
            "1",
            "--beam",
            "1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    want = CT2Translator.open(toy["dir"]).translate(toy["src"][:3], beam=1)
    for line, expected in zip(toy["src"][:3], want):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()  # the pipe stays open: only a flushed answer can come back
        assert proc.stdout.readline().rstrip("\n") == expected
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_device_is_checked(toy):
    res = nmt("translate", "-c", toy["dir"], "--device", "tpu", input="a\n", check=False)
    one_line_error(res, "--device")


def test_bad_input_is_a_one_line_error(toy, tmp_path):
    one_line_error(nmt("export", toy["ckpt"], "-o", toy["dir"], check=False), "--force")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    one_line_error(nmt("export", junk, "-o", tmp_path / "x", check=False), "junk.pt")
    assert not (tmp_path / "x").exists()
    rnn = Path(__file__).parent / "fixtures" / "legacy" / "rnn_attention" / "best.pt"
    one_line_error(nmt("export", rnn, "-o", tmp_path / "r", check=False), "transformer")
    bad_q = nmt("export", toy["ckpt"], "-o", tmp_path / "q", "--quantization", "int4", check=False)
    one_line_error(bad_q, "--quantization")

    def broken(name, change):
        d = tmp_path / name
        shutil.copytree(toy["dir"], d)
        change(d)
        return nmt("translate", "-c", d, input="a b\n", check=False)

    one_line_error(broken("nobin", lambda d: (d / "model.bin").unlink()), "model.bin is missing")
    one_line_error(broken("noman", lambda d: (d / MANIFEST).unlink()), "not an nmt export")
    other = train_sentencepiece(
        ["the quick brown fox jumps over a lazy dog"] * 50, tmp_path / "o.model", 32
    )
    one_line_error(
        broken("spm", lambda d: shutil.copyfile(other, d / "spm.model")), "does not match"
    )
    with pytest.raises(NMTError, match="transformer"):
        export(rnn, tmp_path / "r2")


def _tamper(edit):
    def change(d):
        manifest = json.loads((d / MANIFEST).read_text())
        edit(d, manifest)
        (d / MANIFEST).write_text(json.dumps(manifest))

    return change


TAMPERED = {  # field report: names outside the dir or unbounded read until MemoryError; TypeErrors
    "spm names a path outside": lambda d, m: m.update(spm={"../../etc/passwd": "0" * 64}),
    "spm names an absolute path": lambda d, m: m.update(spm={"/dev/zero": "0" * 64}),
    "files names a parent": lambda d, m: m["files"].append("../../etc/shadow"),
    "spm empty": lambda d, m: m.update(spm={}),
    "calibration a string": lambda d, m: m.update(calibration="abc"),
    "calibration of other keys": lambda d, m: m.update(calibration={"length_ratio": "x"}),
    "spm a huge file": lambda d, m: _sparse(d / "big.model", m),
}


def _sparse(path, manifest):
    """A 1 GiB file that takes no disk (sparse), named as the SentencePiece model."""
    path.write_bytes(b"")
    os.truncate(path, 1 << 30)
    manifest.update(spm={path.name: "0" * 64})


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_manifest_is_one_line_and_reads_nothing_outside(toy, tmp_path, case):
    d = tmp_path / "x"
    shutil.copytree(toy["dir"], d)
    _tamper(TAMPERED[case])(d)
    res = nmt("translate", "-c", d, input="a b\n", check=False)
    one_line_error(res, "corrupt manifest", "re-run nmt export")


# --- the export proves itself: parity with torch, a model card ---------------------------------


def test_parity_holds_on_a_correct_export_and_the_card_says_so(toy):
    manifest = export(toy["ckpt"], toy["tmp"] / "proved")
    parity = manifest["parity"]
    assert parity["checked"] and parity["identical"] + len(parity["ties"]) == parity["lines"]
    card = (toy["tmp"] / "proved" / "MODEL_CARD.md").read_text()
    assert f"identical to the torch model's on {parity['identical']} of {parity['lines']}" in card


def test_parity_fails_an_export_with_a_perturbed_weight(toy, monkeypatch):
    from nmt import export_ct2 as export_module

    real = export_module._spec

    def perturbed(model, cfg, tok):
        spec = real(model, cfg, tok)
        w = spec.decoder.layer[0].ffn.linear_1.weight
        spec.decoder.layer[0].ffn.linear_1.weight = w + np.random.default_rng(0).normal(
            0, 0.5, w.shape
        ).astype(w.dtype)
        return spec

    monkeypatch.setattr(export_module, "_spec", perturbed)
    with pytest.raises(NMTError, match="export parity failed on validation line"):
        export(toy["ckpt"], toy["tmp"] / "broken")
    assert not (toy["tmp"] / "broken").exists()


def test_quantized_export_reports_and_bounds_its_bleu_drop(toy, tmp_path):
    manifest = export(toy["ckpt"], tmp_path / "q8", quantization="int8")
    parity = manifest["parity"]
    assert parity["checked"] and not parity["enforced"]  # 50 validation lines: reported only
    assert parity["bleu_drop"] == pytest.approx(
        parity["bleu_torch"] - parity["bleu_export"], abs=0.02
    )
    src, ref = tmp_path / "v.src", tmp_path / "v.ref"
    src.write_text("\n".join(toy["src"] * 10) + "\n")
    ref.write_text("\n".join(toy["ref"] * 10) + "\n")
    with pytest.raises(NMTError, match="loses .* BLEU against the torch model on 500"):
        export(toy["ckpt"], tmp_path / "q8b", "int8", valid=(src, ref), max_bleu_drop=-100.0)
    assert not (tmp_path / "q8b").exists()


def test_blank_validation_text_is_not_a_parity_check(toy, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    manifest = export(toy["ckpt"], tmp_path / "e", valid=(blank, blank))
    assert manifest["parity"]["checked"] is False


def test_without_validation_text_the_export_says_parity_was_not_checked(toy, tmp_path):
    import dataclasses

    from nmt.config import DataConfig

    state = checkpoint.read(toy["ckpt"])
    state.config = dataclasses.replace(state.config, data=DataConfig(dir=str(tmp_path / "gone")))
    checkpoint.save(state, tmp_path / "moved.pt")
    manifest = export(tmp_path / "moved.pt", tmp_path / "unproved")
    assert manifest["parity"] == {"checked": False, "reason": manifest["parity"]["reason"]}
    card = (tmp_path / "unproved" / "MODEL_CARD.md").read_text()
    assert "Parity with the torch model: not checked" in card


def test_the_card_of_a_run_takes_every_number_from_its_source(trained, tmp_path):
    import shutil as sh

    run = tmp_path / "run"
    sh.copytree(trained / "run", run)
    nmt("evaluate", "-c", run / "best.pt", "--beam", "2", "--json", run / "results.json")
    nmt("card", run)
    card = (run / "MODEL_CARD.md").read_text()
    state = checkpoint.read(run / "best.pt")
    meta = json.loads((trained / "data" / "meta.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert f"Steps: {state.progress['step']}," in card
    n_params = sum(x.numel() for x in checkpoint.model_of(state, run / "best.pt").parameters())
    assert f"{n_params:,} parameters" in card  # tied weights counted once
    assert "translated by this checkpoint (torch)" in card
    assert f"train: {meta['counts']['train']['kept']:,} pairs" in card
    assert f"BLEU {results['bleu']:.2f} (`{results['bleu_signature']}`)" in card
    cal = state.calibration
    assert f"calibrated on {cal['lines']} validation lines" in card
