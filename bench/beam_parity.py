"""Torch beam search against the float32 CTranslate2 export of the same checkpoint, line by line.

    python bench/beam_parity.py CKPT EXPORT_DIR SRC [--beam 5] [--no-repeat-ngram N]
                                [--old-stop] [--show 10]

Translates SRC with both engines (n-best 1, the default length penalty) and, for every line where
the outputs differ, scores both outputs with the torch model by forced decoding under the same
length penalty (end-of-sentence included, as the search scores them). A difference is a float
tie when the two scores are within 1e-4; otherwise the engine with the higher forced score found
the better hypothesis, and the other one's search missed it. `--old-stop` replays the torch
search's previous stopping rule (a sentence stopped once `beam` hypotheses had ended) for a
before/after comparison. Prints counts, timings and the first `--show` differences.
"""

from __future__ import annotations

import argparse
import time

import torch

from nmt import search
from nmt.files import read_text_lines
from nmt.runtimes import open_translator
from nmt.search_options import SearchOptions, length_penalty
from nmt.tokenizer import BOS_ID, EOS_ID


def forced_score(model, tokenizer, src: str, hyp: str, alpha: float) -> float:
    """The search's score of `hyp` for `src`: log-probability (with EOS) over the GNMT penalty."""
    src_ids = torch.tensor(tokenizer.encode_src([src]))
    tgt = tokenizer.encode_tgt([hyp])[0] + [EOS_ID]
    with torch.no_grad():
        logits, _, _ = model.decode(
            torch.tensor([[BOS_ID, *tgt[:-1]]]), model.encode(src_ids, src_ids > 0)
        )
        logp = logits[0].float().log_softmax(-1)[torch.arange(len(tgt)), torch.tensor(tgt)]
    return logp.sum().item() / length_penalty(len(tgt), alpha)


def old_stop_rule():
    """The stopping rule before the fix: also done once K hypotheses have ended."""
    new_rule = search._sentences_done

    def done(beams, finished, step, opts):
        flags = new_rule(beams, finished, step, opts)
        for a, sent in enumerate(beams.sent.tolist()):
            if len(finished[sent]) >= opts.beam:
                flags[a] = True
        return flags

    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("export_dir")
    ap.add_argument("src")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--no-repeat-ngram", type=int, default=0)
    ap.add_argument("--old-stop", action="store_true")
    ap.add_argument("--show", type=int, default=10)
    args = ap.parse_args()
    lines = read_text_lines(args.src)
    opts = SearchOptions(beam=args.beam, no_repeat_ngram=args.no_repeat_ngram)
    if args.old_stop:
        search._sentences_done = old_stop_rule()
    torch_tr, ct2_tr = open_translator(args.ckpt), open_translator(args.export_dir)
    t0 = time.perf_counter()
    a = [r[0].text for r in torch_tr.translate_detailed(lines, opts, warn=lambda n: None)]
    t1 = time.perf_counter()
    b = [r[0].text for r in ct2_tr.translate_detailed(lines, opts, warn=lambda n: None)]
    t2 = time.perf_counter()
    diff = [i for i in range(len(lines)) if a[i] != b[i]]
    verdict = {"tie": 0, "torch better": 0, "ct2 better": 0}
    shown = []
    for i in diff:
        sa, sb = (forced_score(torch_tr.model, torch_tr.tokenizer, lines[i], h, opts.alpha)
                  for h in (a[i], b[i]))  # fmt: skip
        kind = "tie" if abs(sa - sb) < 1e-4 else ("torch better" if sa > sb else "ct2 better")
        verdict[kind] += 1
        if len(shown) < args.show:
            shown.append(f"line {i + 1} ({kind}): torch {sa:.4f} {a[i]!r} | ct2 {sb:.4f} {b[i]!r}")
    rule = "old stop rule" if args.old_stop else "stop rule of this checkout"
    print(f"beam {args.beam}, no-repeat-ngram {args.no_repeat_ngram}, torch {rule}")
    print(f"torch {t1 - t0:.1f} s, ct2 {t2 - t1:.1f} s for {len(lines)} lines")
    print(f"differing lines: {len(diff)} of {len(lines)}: {verdict}")
    print("\n".join(shown))


if __name__ == "__main__":
    main()
