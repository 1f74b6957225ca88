"""`nmt report` on small fake run dirs: complete, still training, crashed, never evaluated."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pytest

from nmt import report, runlog
from nmt.errors import NMTError
from tests.conftest import WORDS

LOG = """\
2026-11-26 08:00:00 {backend}: 1.25M parameters, 1500 training pairs, device cpu, world size 1
2026-11-26 08:00:01 step 1 epoch 1 loss 5.000 lr 1.00e-05 900 tgt tok/s
2026-11-26 08:00:30 step 50 epoch 1 loss 3.000 lr 5.00e-04 1000 tgt tok/s
2026-11-26 08:01:00 step 100 epoch 1 loss 2.000 lr 1.00e-03 1200 tgt tok/s
2026-11-26 08:01:10 validation at step 100: loss 2.500 ppl 12.18 bleu 10.000 (1.00 train min)
2026-11-26 08:02:00 step 150 epoch 2 loss 1.500 lr 1.00e-03 1100 tgt tok/s
2026-11-26 08:02:20 validation at step 200: loss 1.800 ppl 6.05 bleu 25.500 (2.00 train min)
"""


@pytest.fixture(scope="module")
def data_dir(toy_data_dir, tmp_path_factory):
    """A data dir whose test sources run from 2 to 40 words (every length bucket filled)."""
    d = tmp_path_factory.mktemp("report") / "data"
    d.mkdir()
    shutil.copy(toy_data_dir / "spm.model", d)
    (d / "meta.json").write_text(json.dumps({"tgt_lang": "tgt"}))
    rng = random.Random(5)
    srcs = [" ".join(rng.choices(WORDS, k=n)) for n in range(2, 41)]
    (d / "test.src").write_text("".join(s + "\n" for s in srcs))
    (d / "test.tgt").write_text("".join(" ".join(s.split()[::-1]) + "\n" for s in srcs))
    return d


def make_run(root, name, backend="transformer", log=LOG, summary=True, results=None, hyps=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  backend: {backend}\n")
    if log is not None:
        (run / "train.log").write_text(log.format(backend=backend))
    if summary:
        (run / "summary.json").write_text(json.dumps({"steps": 200, "train_seconds": 125.0}))
    if hyps is not None:
        (run / "test.hyp").write_text("".join(h + "\n" for h in hyps))
    if results is not None:
        (run / "results.json").write_text(
            results if isinstance(results, str) else json.dumps(results)
        )
    return run


def scores(data_dir, **extra):
    return {
        "bleu": 50.0,
        "chrf": 60.0,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1",
        "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.5.1",
        "beam": 5,
        "sents_per_s": 42.0,
        "split": "test",
        "data_dir": str(data_dir),
        **extra,
    }


def test_train_log_rows_and_minutes():
    run = runlog.Curves()
    runlog.parse_train_log(run, LOG.format(backend="rnn") + "2026-11-26 08:02:3")  # cut off
    assert run.backend == "rnn" and run.params_m == 1.25
    assert [t["step"] for t in run.train] == [1, 50, 100, 150]
    assert run.train[2]["tok_s"] == 1200
    assert [(v["step"], v["bleu"], v["minutes"]) for v in run.valid] == [
        (100, 10.0, 1.0),
        (200, 25.5, 2.0),
    ]
    assert not run.minutes_from_stamps


def test_minutes_from_stamps_skip_the_gap_of_a_resume():
    log = (
        "2026-11-26 08:00:00 rnn: 1.00M parameters, 10 training pairs\n"
        "2026-11-26 08:02:00 validation at step 100: loss 2.000 ppl 7.39\n"
        "2026-11-26 09:00:00 rnn: 1.00M parameters, 10 training pairs, resuming at step 100\n"
        "2026-11-26 09:01:00 validation at step 150: loss 1.000 ppl 2.72\n"
    )
    run = runlog.Curves()
    runlog.parse_train_log(run, log)
    assert [v["minutes"] for v in run.valid] == [2.0, 3.0]
    assert run.minutes_from_stamps


def test_bleu_by_source_length(data_dir, tmp_path):
    srcs = (data_dir / "test.src").read_text().splitlines()
    refs = (data_dir / "test.tgt").read_text().splitlines()
    short = [" ".join(r.split()[:8]) for r in refs]  # a model that stops after 8 words
    good = make_run(tmp_path, "good", results=scores(data_dir), hyps=refs)
    cut = make_run(tmp_path, "cut", backend="rnn", results=scores(data_dir), hyps=short)
    lengths = report.source_lengths(srcs, data_dir)
    assert min(lengths) <= 10 and max(lengths) > 30
    g, c = report.read_run(good), report.read_run(cut)
    assert [b["bucket"] for b in g.buckets] == ["1-10", "11-20", "21-30", "31+"]
    assert all(b["sentences"] > 0 and b["bleu"] == 100.0 for b in g.buckets)
    assert sum(b["sentences"] for b in c.buckets) == len(srcs)
    assert c.buckets[0]["bleu"] > c.buckets[-1]["bleu"]  # falls off on long sentences
    assert g.notes == [] and c.notes == []


def test_empty_buckets_have_no_score():
    b = report.bucket_bleu(["a b c d e"], ["a b c d e"], [5], None)
    assert [(x["sentences"], x["bleu"]) for x in b] == [(1, 100.0), (0, None), (0, None), (0, None)]


def test_report_of_complete_and_incomplete_runs(data_dir, tmp_path):
    refs = (data_dir / "test.tgt").read_text().splitlines()
    runs = [
        make_run(tmp_path, "done", results=scores(data_dir), hyps=refs),
        make_run(tmp_path, "training", backend="rnn_attention", summary=False),
        make_run(tmp_path, "crashed", backend="rnn", log=LOG[:200], summary=False),
        make_run(tmp_path, "bad-json", results="{not json", hyps=refs),
        make_run(tmp_path, "short-hyp", results=scores(data_dir), hyps=refs[:5]),
        make_run(tmp_path, "empty", log=None, summary=False),
    ]
    page = report.write_report(runs, tmp_path / "out")
    text = page.read_text()
    for name in ("curves.png", "throughput.png", "bleu_by_length.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in text
    table = text.split("\n\n")[1].splitlines()  # the first table
    rows = {line.split(" | ")[0][2:]: line for line in table}
    assert rows["done"].split(" | ")[1:] == [
        "transformer", "1.25M", "200", "2.1", "1100", "25.50", "50.00", "60.00", "42.0 |"
    ]  # fmt: skip
    assert rows["training"].split(" | ")[3:5] == ["200", "2.0"]  # from the log alone
    notes = {line[2:].split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "still training" in notes["training"] and "not evaluated" in notes["training"]
    assert "not evaluated" in notes["crashed"]
    assert "results.json is unreadable" in notes["bad-json"]
    assert "5 lines for 39 source lines" in notes["short-hyp"]
    assert "no train.log or TensorBoard scalars" in notes["empty"]
    assert "tok:13a|smooth:exp" in text  # the signature is shown


def test_tensorboard_scalars_when_there_is_no_log(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = make_run(tmp_path, "tb", log=None, summary=False)
    w = SummaryWriter(str(run / "tensorboard"))
    for step, loss in ((50, 3.0), (100, 2.0)):
        w.add_scalar("train/loss", loss, step)
        w.add_scalar("train/tgt_tok_s", 1000.0, step)
    w.add_scalar("valid/loss", 2.5, 100)
    w.add_scalar("valid/bleu", 12.0, 100)
    w.close()
    r = report.read_run(run)
    assert [t["step"] for t in r.train] == [50, 100]
    assert [(v["step"], round(v["bleu"], 3)) for v in r.valid] == [(100, 12.0)]


def test_missing_run_dir_is_an_error(tmp_path):
    with pytest.raises(NMTError, match="run dir not found"):
        report.write_report([tmp_path / "nope"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_report_runs_without_torch(tmp_path):
    run = make_run(tmp_path, "r")
    probe = (
        "import sys; from nmt.cli import main; sys.argv = ['nmt', 'report', sys.argv[1], "
        "'-o', sys.argv[2]]\ntry:\n    main()\nfinally:\n    print('torch' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, str(run), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    assert (tmp_path / "out" / "report.md").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "nmt", "report", str(tmp_path / "nope"), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        f"nmt: error: run dir not found: {tmp_path / 'nope'}"
    ]


# --- nmt report --compare -----------------------------------------------------------------------


def test_compare_two_runs_tests_significance_and_counts_flags(trained, tmp_path):
    import shutil

    from tests.conftest import nmt

    runs = []
    for name, beam in (("a", "1"), ("b", "3")):
        run = tmp_path / name
        shutil.copytree(trained / "run", run)
        nmt("evaluate", "-c", run / "best.pt", "--beam", beam, "--json", run / "results.json")
        assert (run / "results.hyp.flags.jsonl").is_file()
        runs.append(run)
    res = nmt("report", "--compare", *runs, "-o", tmp_path / "cmp")
    page = (tmp_path / "cmp" / "compare.md").read_text()
    assert "paired bootstrap" in page and "significant at 0.05" in page
    assert "## BLEU by source length (subwords)" in page
    assert "| loop |" in page and "| cut |" in page  # flag counts of both sides
    assert (tmp_path / "cmp" / "compare.png").is_file() and "Traceback" not in res.stderr

    plain = tmp_path / "plain"  # a run never evaluated: a note, not a traceback
    shutil.copytree(trained / "run", plain)
    for p in plain.glob("*"):
        if p.name.startswith(("results", "test.hyp")):  # other tests may have evaluated it
            p.unlink()
    res = nmt("report", "--compare", runs[0], plain, "-o", tmp_path / "cmp2")
    page = (tmp_path / "cmp2" / "compare.md").read_text()
    assert "note: plain: no test hypotheses to compare" in page


def test_compare_two_hypothesis_files(trained, tmp_path):
    from tests.conftest import nmt

    data = trained / "data"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    src, ref = data / "test.src", data / "test.tgt"
    a.write_text(ref.read_text())  # the reference itself
    b.write_text(src.read_text())  # the source: word order reversed, a worse system
    nmt("report", "--compare", a, b, "--source", src, "--reference", ref, "-o", tmp_path / "c")
    page = (tmp_path / "c" / "compare.md").read_text()
    assert "b.txt is worse on BLEU" in page and "Losses of b.txt" in page
    assert "No flag files" in page
    res = nmt("report", "--compare", a, b, "--source", src, "-o", tmp_path / "d", check=False)
    assert res.returncode == 1 and "--source and --reference go together" in res.stderr
