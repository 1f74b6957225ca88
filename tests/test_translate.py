"""The translator API and `nmt translate` output: line notes, columns, words and alignments."""

from __future__ import annotations

import warnings

import pytest

from tests.conftest import nmt

# --- notes per line: what was cut, left out or stopped ------------------------------------------


def test_translator_warns_about_truncated_inputs(tiny_checkpoint):
    from nmt.runtimes import Translator

    translator = Translator.load(tiny_checkpoint)
    long = " ".join(["red cat"] * translator.max_len)
    with pytest.warns(UserWarning, match="line 2: .* truncated to the model's limit"):
        out = translator.translate(["blue dog", long, ""], beam=1)
    assert len(out) == 3 and out[2] == ""
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        translator.translate(["blue dog"], beam=1)
    assert not [w for w in heard if "truncated" in str(w.message)]  # nothing truncated


def test_characters_outside_the_vocabulary_are_named_per_line(tiny_checkpoint):
    from nmt.runtimes import Translator

    translator = Translator.load(tiny_checkpoint)
    with pytest.warns(UserWarning, match="line 2: not in the model's vocabulary: 東京 ☆★☆"):
        translator.translate(["red cat", "red 東京 cat ☆★☆", "blue"], beam=1)


def test_outputs_stopped_by_the_length_limit_are_reported(trained):
    ckpt = trained / "run" / "best.pt"
    limit = ["--max-len-a", "0", "--max-len-b", "4"]
    res = nmt("translate", "-c", ckpt, "--beam", "1", *limit, input="red cat moon sun dog\nsun\n")
    assert "line 1: output stopped by the length limit before its end (4 tokens)" in res.stderr
    assert "line 2" not in res.stderr  # a one-word reversal ends within four tokens
    res = nmt("evaluate", "-c", ckpt, *limit)
    assert "output stopped by the length limit before its end:" in res.stdout
    assert "Traceback" not in res.stderr


# --- columns: one line per input, tab-separated n-best ------------------------------------------


def test_a_tab_or_newline_inside_an_output_text_keeps_columns_and_lines():
    from nmt.translate import _format
    from nmt.translator import Translation

    nbest = [Translation("a\tb", -1.0, [], []), Translation("c\nd", -2.0, [], [])]
    assert _format(nbest[:1], 1, False) == "a b"
    assert _format(nbest, 2, False).split("\t") == ["a b", "-1.0000", "c d", "-2.0000"]


# --- alignments in words of the printed texts, not in pieces ------------------------------------


def test_pieces_map_to_the_words_of_the_text():
    from nmt.translator import word_ids

    pieces = ["▁Ein", "▁brau", "n", "-", "weiß", "er", "▁Hund", "."]
    assert word_ids(pieces) == [0, 1, 1, 1, 1, 1, 2, 2]
    assert word_ids(["▁", "sun", "▁dog", "▁"]) == [None, 0, 1, None]
    assert word_ids(["ab", "▁c"]) == [0, 1]
    assert word_ids(["<s>", "▁a", "b", "</s>"]) == [None, 0, 0, None]
    # an output's <unk> is decoded as " ⁇ ": a word of its own, as the text shows
    pieces = ["▁", "<unk>", "e", "l", "▁", "<unk>", "o"]
    assert word_ids(pieces, output=True) == [None, 0, 1, 1, None, 2, 3]  # " ⁇ el  ⁇ o"
    assert word_ids(pieces) == [None, 0, 0, 0, None, 1, 1]  # in an input: the unknown text


def test_alignments_link_words_of_the_printed_texts_without_special_tokens():
    from nmt.translator import Translation

    attention = [  # rows: target pieces (and </s>), columns: source pieces (and </s>)
        [0.7, 0.1, 0.1, 0.1],
        [0.1, 0.1, 0.7, 0.1],  # "▁child" attends to "er", a piece of source word 1
        [0.1, 0.7, 0.1, 0.1],  # "ren" to "▁Kind": the same link, once
        [0.1, 0.1, 0.1, 0.7],  # </s> to </s>: no link
    ]
    t = Translation(
        "Two children", -1.0, ["▁Zwei", "▁Kind", "er", "</s>"], ["▁Two", "▁child", "ren", "</s>"]
    )
    t.attention = attention
    assert t.alignment() == "0-0 1-1"  # was "0-0 2-1 1-2 0-3": pieces, and a link for </s>


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, closed, needle",
    [
        ("translate", 0, "standard input is closed"),
        ("score", 0, "standard input is closed"),
        ("translate", 1, "standard output is closed: give -o FILE"),
    ],
)
def test_a_closed_stdin_or_stdout_is_one_line(tiny_checkpoint, command, closed, needle):
    """Field report: `nmt translate -c C <&-` (or `>&-`) ended in a 41-43-line AttributeError."""
    import os
    import subprocess
    import sys

    from tests.conftest import ENV, one_line_error

    res = subprocess.run(
        [sys.executable, "-m", "nmt", command, "-c", str(tiny_checkpoint)],
        stdout=None if closed == 1 else subprocess.PIPE,
        stderr=subprocess.PIPE,
        input=b"red cat\n" if closed == 1 else None,
        env=ENV,
        preexec_fn=lambda: os.close(closed),
        timeout=300,
    )
    res.stderr = res.stderr.decode()
    one_line_error(res, needle)
