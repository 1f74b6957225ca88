"""The real CLI end to end, on a model trained through it: translate, report, attention, errors."""

from __future__ import annotations

import subprocess
import sys

import torch

from tests.conftest import ENV, nmt, one_line_error, reverse_pairs, write_parallel  # noqa: F401


def test_report_of_a_trained_and_evaluated_run(trained):
    run = trained / "run"
    nmt("evaluate", "-c", run / "best.pt", "--json", run / "results.json", "-o", run / "test.hyp")
    res = nmt("report", run, "-o", trained / "report")
    text = (trained / "report" / "report.md").read_text()
    assert "report.md" in res.stderr
    header = next(line for line in text.splitlines() if line.startswith("| run | 1-10 ("))
    assert sum(int(c.split("(")[1].rstrip(") ")) for c in header.split("|")[2:-1]) == 50
    assert "## Notes" not in text  # nothing missing


def test_translate_file_to_file_keeps_lines_and_blanks(trained):
    src = trained / "in.txt"
    src.write_text("red cat moon\n\nstone fish\r\nblue tree house")  # CRLF, blank, no final newline
    out = trained / "out.txt"
    nmt("translate", "-c", trained / "run" / "best.pt", src, "-o", out, "--beam", "3")
    lines = out.read_text().split("\n")
    assert lines == ["moon cat red", "", "fish stone", "house tree blue", ""]


def test_translate_stdin_to_stdout_greedy_and_nbest(trained):
    ckpt = trained / "run" / "best.pt"
    res = nmt("translate", "-c", ckpt, "--beam", "1", input="dog bird\nsun rain star\n")
    assert res.stdout == "bird dog\nstar rain sun\n"
    res = nmt("translate", "-c", ckpt, "--beam", "4", "--n-best", "2", input="dog bird\n")
    cols = res.stdout.rstrip("\n").split("\t")
    assert len(cols) == 4 and cols[0] == "bird dog"
    assert float(cols[1]) >= float(cols[3])


def test_python_api_matches_the_cli(trained):
    from nmt import Translator

    t = Translator.load(trained / "run" / "best.pt")
    assert t.translate(["dog bird", "", "sun rain star"], beam=2) == [
        "bird dog",
        "",
        "star rain sun",
    ]


def test_alignment_and_attention_plot(trained):
    plots = trained / "plots"
    res = nmt(
        "translate",
        "-c",
        trained / "run" / "best.pt",
        "--alignment",
        "--attention-plot",
        plots,
        input="red cat moon\n",
    )
    text, links = res.stdout.rstrip("\n").split("\t")
    assert text == "moon cat red"
    pairs = [tuple(map(int, x.split("-"))) for x in links.split()]
    assert pairs and all(i < 3 and j < len(text.split()) for i, j in pairs)  # word indices
    png = plots / "line-000001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_per_layer_and_head(trained):
    plots = trained / "views"
    args = ["translate", "-c", trained / "run" / "best.pt", "--attention-plot", plots]
    nmt(*args, "--attention-layer", "all", "--attention-heads", "all", "--self-attention",
        input="red cat moon\n")  # fmt: skip
    names = sorted(p.name for p in plots.iterdir())
    assert names == [
        f"line-000001-{kind}-layer{n}.png"
        for kind in ("cross", "decoder", "encoder")
        for n in (1, 2)
    ]
    bad = nmt(*args, "--attention-layer", "3", input="red cat\n", check=False)
    one_line_error(bad, "--attention-layer 3", "2 layer(s)")
    bad = nmt(*args, "--attention-heads", "some", input="red cat\n", check=False)
    one_line_error(bad, "--attention-heads must be one of: mean, all")
    bad = nmt(*args[:3], "--attention-layer", "all", input="red cat\n", check=False)
    one_line_error(bad, "need --attention-plot")


def test_python_api_returns_attention_per_layer_and_head(trained):
    from nmt import Translator
    from nmt.search import SearchOptions

    tr = Translator.load(trained / "run" / "best.pt")
    opts = SearchOptions(beam=3, attention=True)
    t = tr.translate_detailed(["red cat moon"], opts, maps=True)[0][0]
    n_src, n_tgt = len(t.src_pieces), len(t.tgt_pieces)
    assert {k: tuple(v.shape) for k, v in t.maps.items()} == {
        "cross": (2, 4, n_tgt, n_src),
        "encoder": (2, 4, n_src, n_src),
        "decoder": (2, 4, n_tgt, n_tgt),
    }
    # the last layer's mean over heads is the map beam search kept for this hypothesis
    torch.testing.assert_close(t.maps["cross"][-1].mean(0), t.attention, atol=1e-5, rtol=1e-4)
    assert tr.translate_detailed(["red cat moon"], opts)[0][0].maps is None  # only on request


def test_too_long_input_is_truncated_with_a_warning(trained):
    res = nmt(
        "translate", "-c", trained / "run" / "best.pt", "--beam", "1", input="red " * 60 + "\nsun\n"
    )
    assert res.stdout.count("\n") == 2
    assert "line 1" in res.stderr and "truncated" in res.stderr


def test_bad_input_file_leaves_no_output(trained, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"dog bird\n\xff\xfe oops\n")
    out = tmp_path / "out.txt"
    res = nmt("translate", "-c", trained / "run" / "best.pt", bad, "-o", out, check=False)
    one_line_error(res, f"{bad}:2", "invalid UTF-8")
    assert not out.exists() and not list(tmp_path.glob(".out.txt.tmp*"))
    res = nmt("translate", "-c", trained / "run" / "best.pt", tmp_path / "nope.txt", check=False)
    one_line_error(res, "input file not found")


def test_config_typo_on_the_command_line(trained):
    res = nmt(
        "train", "-o", trained / "typo", f"data.dir={trained / 'data'}", "train.lrr=1", check=False
    )
    one_line_error(res, "unknown config key train.lrr", "valid keys in train:")


def test_help_is_fast_and_lists_commands():
    res = nmt("--help")
    for cmd in ("preprocess", "train", "translate", "evaluate", "average", "report", "demo"):
        assert cmd in res.stdout
    probe = "import sys, nmt.cli; print('torch' in sys.modules, 'datasets' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV)
    assert res.stdout.strip() == "False False"  # heavy imports stay out of start-up
