"""Lexically constrained search: every required phrase appears, scores stay the model's."""

from __future__ import annotations

import random

import pytest

from nmt.constraints import MET, Glossary, Phrases
from nmt.errors import NMTError
from nmt.models.ensemble import Ensemble
from nmt.runtimes import Translator
from nmt.search_options import SearchOptions
from tests.conftest import WORDS, nmt, one_line_error


def test_a_phrase_is_followed_through_overlapping_restarts():
    p = Phrases([[1, 1, 2]])
    state = p.start()
    for tok in (1, 1, 1):  # "1 1 1": the last two tokens still start the phrase
        state = p.advance(state, tok)
    assert state == (2,) and p.bank(state) == 2 and p.wanted(state) == {2, 1}
    state = p.advance(state, 2)
    assert p.may_end(state) and p.unmet(state) == [] and p.wanted(state) == set()
    assert p.advance(state, 5) == (MET,)  # the next word starts: met for good
    assert p.advance(p.advance(p.start(), 1), 3) == (0,)  # a wrong token starts over


def test_a_phrase_is_met_only_at_a_word_edge():
    glue = frozenset({9})  # a piece that continues a word ("s" after "dog")
    p = Phrases([[5]], glue)
    done = p.advance(p.start(), 5)
    assert p.may_end(done)  # the output may end right after the phrase
    assert p.advance(done, 9) == (0,) and not p.may_end(p.advance(done, 9))
    assert p.advance(done, 7) == (MET,) and p.advance(p.advance(done, 7), 9) == (MET,)
    loose = Phrases([[5]], glue, edged=[False])  # a phrase ending in, say, a CJK character
    assert loose.advance(loose.start(), 5) == (MET,)


def test_banks_count_met_phrases_in_full_and_the_longest_partial_match():
    p = Phrases([[5, 6], [7, 8, 9]])
    state = p.start()
    for tok in (5, 6, 7, 8):
        state = p.advance(state, tok)
    assert p.bank(state) == 2 + 2 and p.unmet(state) == [1] and not p.may_end(state)


def test_glossary_terms_match_as_words():
    g = Glossary([("cat", "Katze"), ("New York", "New York"), ("猫", "cat")])
    assert g.targets("a category of cats") == []
    assert g.targets("the cat, in New York.") == ["Katze", "New York"]
    assert g.targets("我的猫很好") == ["cat"]  # a script without spaces has no word edges


@pytest.fixture(scope="module")
def model(trained):
    data = trained / "data"
    return Translator.load(trained / "run" / "best.pt"), (
        data / "test.src"
    ).read_text().splitlines()


def random_constraints(srcs, seed):
    rng = random.Random(seed)
    out = []
    for _ in srcs:
        n = rng.choice([0, 1, 1, 2])
        out.append([" ".join(rng.choices(WORDS, k=rng.choice([1, 2]))) for _ in range(n)])
    return out


@pytest.mark.parametrize("beam,n_best", [(1, 1), (3, 1), (5, 3)])
def test_every_constraint_appears_in_every_output(model, beam, n_best):
    t, srcs = model
    for seed in range(3):
        constraints = random_constraints(srcs, seed)
        notes = []
        opts = SearchOptions(beam=beam, n_best=n_best, max_len_b=20)
        out = t.translate_detailed(srcs, opts, constraints=constraints, warn=notes.append)
        assert [n for n in notes if n.kind == "unmet"] == []
        for phrases, nbest in zip(constraints, out):
            assert len(nbest) == n_best
            for h in nbest:  # as whole words: "red" is not met by "reds"
                words = f" {h.text} "
                assert all(f" {p} " in words for p in phrases), (phrases, h.text)


def test_constrained_outputs_score_as_reported(model):
    t, srcs = model
    constraints = random_constraints(srcs, 7)
    opts = SearchOptions(beam=4, n_best=2, alpha=0.0, attention=True)
    out = t.translate_detailed(srcs, opts, constraints=constraints)
    tok = t.tokenizer
    hyps = [(s, h) for s, hs in zip(srcs, out) for h in hs if h.ended]  # cut ones lack </s>
    same = [
        (s, h) for s, h in hyps if tok.tgt_pieces(tok.encode_tgt([h.text])[0]) == h.tgt_pieces[:-1]
    ]
    assert len(same) >= len(hyps) // 2
    scores = t.score([s for s, _ in same], [h.text for _, h in same])
    for (_, h), sc in zip(same, scores):
        assert sc.total == pytest.approx(h.score, abs=1e-4)


def test_no_constraints_is_the_plain_beam_search(model):
    t, srcs = model
    opts = SearchOptions(beam=4, n_best=2)
    plain = t.translate_detailed(srcs, opts)
    empty = t.translate_detailed(srcs, opts, constraints=[[] for _ in srcs])
    for a, b in zip(plain, empty):
        assert [h.text for h in a] == [h.text for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_constraints_work_with_an_ensemble(model, trained):
    t, srcs = model
    two = Translator.load([trained / "run" / "best.pt"] * 2)
    assert isinstance(two.model, Ensemble)
    constraints = random_constraints(srcs, 11)
    out = two.translate_detailed(srcs, SearchOptions(beam=3), constraints=constraints)
    one = t.translate_detailed(srcs, SearchOptions(beam=3), constraints=constraints)
    assert [o[0].text for o in out] == [o[0].text for o in one]


def test_a_constraint_the_length_limit_leaves_no_room_for_is_reported(trained, tmp_path):
    data = trained / "data"
    src = tmp_path / "in.txt"
    src.write_text("red cat\nblue dog\n")
    cons = tmp_path / "c.txt"
    cons.write_text("moon sun star cloud rain fish\n\n")
    args = ["-c", trained / "run" / "best.pt", src, "--constraints", cons, "--max-len-a", "0"]
    res = nmt("translate", *args, "--max-len-b", "3", "-q")
    assert len(res.stdout.splitlines()) == 2
    assert "line 1: not met within the length limit: 'moon sun star cloud rain fish'" in res.stderr
    assert "line 2" not in res.stderr
    assert data.is_dir()


def test_the_cli_takes_constraints_and_a_glossary(trained, tmp_path):
    ckpt = trained / "run" / "best.pt"
    src = tmp_path / "in.txt"
    src.write_text("red cat green\nblue dog\n\nfish moon\n")
    cons = tmp_path / "c.txt"
    cons.write_text("stone\n\n\nriver\tcloud\n")
    gloss = tmp_path / "g.tsv"
    gloss.write_text("dog\ttree house\n")
    out = nmt("translate", "-c", ckpt, src, "--constraints", cons, "--glossary", gloss, "-q")
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and lines[2] == ""
    assert "stone" in lines[0] and "tree house" in lines[1]
    assert "river" in lines[3] and "cloud" in lines[3]


def test_bad_constraint_inputs_are_one_line_errors(trained, tmp_path):
    ckpt = trained / "run" / "best.pt"
    src = tmp_path / "in.txt"
    src.write_text("red cat\nblue dog\n")
    short = tmp_path / "c.txt"
    short.write_text("stone\n")
    out = tmp_path / "out.txt"
    res = nmt("translate", "-c", ckpt, src, "--constraints", short, "-o", out, check=False)
    one_line_error(res, "has 1 lines, the input 2")
    assert not out.exists()
    res = nmt("translate", "-c", ckpt, "--constraints", short, input="a\nb\n", check=False)
    one_line_error(res, "has 1 lines, the input more")
    res = nmt("translate", "-c", ckpt, src, "--constraints", short, "--sample", check=False)
    one_line_error(res, "not sampling")
    bad = tmp_path / "g.tsv"
    bad.write_text("only one field\n")
    res = nmt("translate", "-c", ckpt, src, "--glossary", bad, check=False)
    one_line_error(res, "g.tsv:1", "SOURCE TERM<tab>TARGET TERM")


def test_an_export_dir_refuses_constraints(trained, tmp_path):
    pytest.importorskip("ctranslate2")
    nmt("export", trained / "run" / "best.pt", "-o", tmp_path / "ct2")
    cons = tmp_path / "c.txt"
    cons.write_text("stone\n")
    src = tmp_path / "in.txt"
    src.write_text("red cat\n")
    res = nmt("translate", "-c", tmp_path / "ct2", src, "--constraints", cons, check=False)
    one_line_error(res, "torch checkpoint", "CTranslate2")


def test_phrases_that_cannot_be_met_are_notes(model):
    t, srcs = model
    notes = []
    lines = [srcs[0], "", srcs[1]]
    cons = [["red", "€€€"], ["blue"], ["green"]]  # "€" is outside the toy vocabulary
    out = t.translate_detailed(lines, SearchOptions(beam=3), constraints=cons, warn=notes.append)
    got = {(n.line, n.kind) for n in notes}
    assert (0, "unmet") in got and (1, "unmet") in got and (2, "unmet") not in got
    assert "'€€€' cannot be spelled" in str(notes[[n.line for n in notes].index(0)])
    assert " red " in f" {out[0][0].text} " and out[1][0].text == "" and "green" in out[2][0].text
    with pytest.raises(NMTError, match="2 lines of constraints for 3 lines"):
        t.translate_detailed(lines, SearchOptions(beam=3), constraints=cons[:2])
