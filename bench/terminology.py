"""A terminology test from a test set, and how constrained search does on it.

    python bench/terminology.py CKPT SRC REF [-c CKPT2 ...] [--beam 5] [--max 2]
                                [--constraints-out FILE] [--rounds 2] [--threads 0]

Translates SRC with CKPT (beam search, no constraints), then builds the test: for each line, up
to `--max` words of the reference that the unconstrained output misses (whole words of 4+
letters, not among the 60 most frequent reference words, the longest first, each at most once
per line). Translates again with those words as constraints (`--constraints-out` keeps the
file, in the `nmt translate --constraints` format) and reports:

- satisfaction: constraints found in the constrained output as a whole word, and as text
  anywhere (a constraint is met token by token, so "dog" may come out inside "dogs");
- BLEU of both outputs against REF (sacreBLEU, the target language's tokenizer);
- time of both at the same beam, alternating `--rounds` times (median), and the slowdown.

More -c checkpoints make an ensemble. The constraints come from the reference, so the BLEU
gain shows what a terminology list can bring, not what a model does unaided.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections import Counter

from nmt.files import read_text_lines
from nmt.runtimes import open_translator
from nmt.scores import bleu
from nmt.search_options import SearchOptions
from nmt.translator import RuntimeOptions

WORD = re.compile(r"\w{4,}")


def build_test(refs: list[str], hyps: list[str], most: int) -> list[list[str]]:
    """Per line, up to `most` reference words the output lacks, the longest first."""
    common = {
        w for w, _ in Counter(w.lower() for r in refs for w in WORD.findall(r)).most_common(60)
    }
    test = []
    for ref, hyp in zip(refs, hyps):
        have = set(re.findall(r"\w+", hyp))
        words = [
            w for w in dict.fromkeys(WORD.findall(ref)) if w not in have and w.lower() not in common
        ]
        test.append(sorted(words, key=len, reverse=True)[:most])
    return test


def satisfaction(test: list[list[str]], hyps: list[str]) -> tuple[int, int, int]:
    """(constraints, met as whole words, met as text anywhere)."""
    n = word = text = 0
    for words, hyp in zip(test, hyps):
        for w in words:
            n += 1
            word += bool(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", hyp))
            text += w in hyp
    return n, word, text


def timed(translator, srcs, opts, constraints=None) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = translator.translate_detailed(srcs, opts, constraints=constraints, warn=lambda n: None)
    return [o[0].text for o in out], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("src")
    ap.add_argument("ref")
    ap.add_argument("-c", dest="more", action="append", default=[], help="ensemble members")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max", type=int, default=2, help="constraints per line at most")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--constraints-out")
    args = ap.parse_args()
    translator = open_translator([args.ckpt, *args.more], RuntimeOptions(threads=args.threads))
    srcs, refs = read_text_lines(args.src), read_text_lines(args.ref)
    opts = SearchOptions(beam=args.beam)
    plain, _ = timed(translator, srcs, opts)
    test = build_test(refs, plain, args.max)
    if args.constraints_out:
        with open(args.constraints_out, "w", encoding="utf-8") as f:
            f.writelines("\t".join(words) + "\n" for words in test)
    times: dict[str, list[float]] = {"plain": [], "constrained": []}
    for _ in range(args.rounds):
        plain, t = timed(translator, srcs, opts)
        times["plain"].append(t)
        constrained, t = timed(translator, srcs, opts, test)
        times["constrained"].append(t)
    n, word, text = satisfaction(test, constrained)
    lang = translator.tgt_lang
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"lines {len(srcs)}, with constraints {sum(bool(t) for t in test)}, constraints {n}")
    print(f"satisfied: as whole words {word}/{n} ({100 * word / max(n, 1):.1f} %), "
          f"as text {text}/{n} ({100 * text / max(n, 1):.1f} %)")  # fmt: skip
    print(
        f"BLEU unconstrained {bleu(plain, refs, lang):.2f}, constrained {bleu(constrained, refs, lang):.2f}"
    )
    print(f"beam {args.beam} seconds (median of {args.rounds}): unconstrained {median['plain']:.2f}, "
          f"constrained {median['constrained']:.2f}, slowdown {median['constrained'] / median['plain']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
