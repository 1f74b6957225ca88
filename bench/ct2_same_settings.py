"""Decode Multi30k test with an `nmt export` dir through CTranslate2 directly, with the settings of
the OpenNMT-py peer script (../shared/bench/peers/opennmt/ct2_translate.py): one Translator,
inter_threads 1, intra_threads THREADS, max_batch_size 64 sentences, max_decoding_length 100.
The one difference: our models read `</s>` at the end of the source, so it is appended.

usage: ct2_same_settings.py EXPORT_DIR SRC_TXT OUT_TXT BEAM THREADS
Prints pure decoding seconds, sentences/s and output tokens (target pieces + EOS).
"""

import sys
import time

import ctranslate2
import sentencepiece as spm

export_dir, src, out, beam, threads = sys.argv[1:6]
sp = spm.SentencePieceProcessor(model_file=f"{export_dir}/spm.model")
lines = [line.rstrip("\n") for line in open(src, encoding="utf-8")]
toks = [sp.encode(line, out_type=str) + ["</s>"] for line in lines]
tr = ctranslate2.Translator(export_dir, device="cpu", inter_threads=1, intra_threads=int(threads))
t0 = time.perf_counter()
res = tr.translate_batch(toks, beam_size=int(beam), max_batch_size=64, max_decoding_length=100)
secs = time.perf_counter() - t0
hyps = [r.hypotheses[0] for r in res]
with open(out, "w", encoding="utf-8") as f:
    for h in hyps:
        f.write(sp.decode(h) + "\n")
ntok = sum(len(h) + 1 for h in hyps)
print(f"pure_decode_s={secs:.3f} sent/s={len(lines) / secs:.1f} output_tokens={ntok}")
