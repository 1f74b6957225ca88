"""Trust flags: each check on a constructed output, calibration, and both engines alike."""

from __future__ import annotations

import json

import pytest

from nmt.flags import Calibration, LineFacts, check, summary

CAL = Calibration(ratio_low=0.5, ratio_high=2.0, min_mean_logprob=-2.0, lines=100)
SOURCE = "ein Mann fährt mit dem Fahrrad durch die Stadt"


def facts(output: str, pieces: int | None = None, logprob: float = -0.5, ended: bool = True):
    n = len(output.split()) if pieces is None else pieces
    return LineFacts(SOURCE, output, 9, n, logprob, ended)


@pytest.mark.parametrize(
    "case, expected",
    [
        (facts("a man rides a bike through the city"), []),
        (facts("a man rides a bike bike bike bike"), ["loop"]),
        (facts("a man in the park in the park in the park"), ["loop"]),
        (facts("two men in traditionalalalalalalal", pieces=12), ["loop"]),  # a subword loop
        (facts("a man paid 1000000 dollars and said aaah"), []),  # digits, short runs: no
        (facts(SOURCE), ["copy"]),
        (facts("ein Mann fährt mit dem Fahrrad durch die Stadt ."), ["copy"]),
        (facts("a man rides a bike through the", ended=False), ["cut"]),
        (facts("a man"), ["length_ratio"]),
        (facts("a man rides a bike through the city", pieces=30), ["length_ratio"]),
        (facts("a man rides a bike through the city", logprob=-3.1), ["low_confidence"]),
    ],
)  # fmt: skip
def test_each_check_fires_on_its_case_alone(case, expected):
    assert check(case, CAL)["flags"] == expected


def test_without_calibration_the_two_calibrated_checks_are_skipped():
    out = check(facts("a man", logprob=-9.0), None)
    assert out["flags"] == [] and out["calibrated"] is False
    assert out["length_ratio"] == pytest.approx(2 / 9, abs=1e-3)  # the value is still reported
    assert check(facts("a a a a"), None)["flags"] == ["loop"]


def test_sampled_outputs_skip_the_confidence_floor_and_tiny_splits_do_not_calibrate():
    sampled = LineFacts(SOURCE, "a man rides a bike through the city", 9, 8, -3.1, True, True)
    assert check(sampled, CAL)["flags"] == []
    assert Calibration.from_validation([1.0] * 5, [-1.0] * 5) is None
    assert Calibration.from_validation([], []) is None


def test_calibration_takes_the_percentiles_of_the_validation_split():
    cal = Calibration.from_validation([1.0] * 98 + [0.1, 5.0], [-1.0] * 95 + [-4.0] * 5)
    assert 0.1 < cal.ratio_low <= 1.0 and 1.0 <= cal.ratio_high < 5.0
    assert -4.0 < cal.min_mean_logprob <= -1.0 and cal.lines == 100
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_summary_counts_lines_and_scores_flagged_against_unflagged():
    flags = [check(facts("x y"), CAL), check(facts("a a a a"), CAL), None]
    s = summary(flags, ["h1", "h2", ""], ["r1", "r2", ""], lambda h, r: float(len(h)))
    assert s["lines"]["loop"] == 1 and s["lines"]["length_ratio"] == 2 and s["flagged"] == 2
    assert s["bleu_flagged"] == 2.0 and s["bleu_unflagged"] == 1.0


def test_training_calibrates_and_checkpoints_carry_it(trained):
    from nmt import checkpoint
    from nmt.runtimes import Translator
    from nmt.search_options import SearchOptions

    state = checkpoint.read(trained / "run" / "best.pt")
    cal = Calibration.from_dict(state.calibration)
    assert cal is not None and cal.lines > 0 and cal.ratio_low <= 1.0 <= cal.ratio_high
    translator = Translator.load(trained / "run" / "best.pt")
    t = translator.translate_detailed(["red cat moon"], SearchOptions(beam=1))[0][0]
    assert t.flags["calibrated"] and t.flags["flags"] == []


def test_translate_writes_one_flags_line_per_input_line(trained, tmp_path):
    from tests.conftest import nmt

    ckpt, out = trained / "run" / "best.pt", tmp_path / "flags.jsonl"
    nmt("translate", "-c", ckpt, "--beam", "1", "--flags", out, input="red cat moon\n\nsun dog\n")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[1].get("blank") is True
    assert all(r["calibrated"] for r in (rows[0], rows[2]))
    res = nmt("translate", "-c", ckpt, "--flags", out, "-o", out, input="sun\n", check=False)
    assert res.returncode == 1 and "is also an input or the output" in res.stderr
