"""Translation on CTranslate2 from an `nmt export` directory, without importing torch.

`CT2Translator` keeps the torch `Translator`'s semantics (`nmt.translate.TranslatorBase`): our
SentencePiece, `</s>` appended to the source, the length limit `a * len + b` per sentence, beam
search ranked by the GNMT length penalty, n-best with scores, sampling, n-gram blocking and
attention for alignments. CTranslate2 normalises scores by `len ** penalty`, not GNMT's
`((5 + len) / 6) ** alpha`, so beam search runs unnormalised with every finished hypothesis kept
(`num_hypotheses = beam`), and they are ranked here by GNMT.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from types import SimpleNamespace

from nmt.errors import NMTError
from nmt.search_options import Hypothesis, SearchOptions, length_penalty
from nmt.tokenizer import EOS_ID, Tokenizer
from nmt.translate import TranslatorBase

MANIFEST = "nmt-export.json"


def read_manifest(export_dir: Path) -> dict:
    """The manifest of an export dir, after checking that every file it lists is there intact."""
    d = Path(export_dir)
    if not (d / MANIFEST).is_file():
        raise NMTError(
            f"{d}: not an nmt export directory (no {MANIFEST}); make one with: "
            f"nmt export CHECKPOINT -o {d}"
        )
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        files, spm = list(manifest["files"]), dict(manifest["spm"])
    except (ValueError, KeyError, TypeError):
        raise NMTError(f"{d / MANIFEST}: corrupt manifest; re-run nmt export") from None
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise NMTError(f"{d}: export is incomplete, {missing[0]} is missing; re-run nmt export")
    for name, digest in spm.items():
        if hashlib.sha256((d / name).read_bytes()).hexdigest() != digest:
            raise NMTError(
                f"{d / name}: SentencePiece model does not match the exported model "
                "(the file was replaced); re-run nmt export"
            )
    return manifest


class CT2Translator(TranslatorBase):
    """An exported model on CTranslate2, with the same API as `nmt.translate.Translator`."""

    has_attention = True  # a Transformer: cross-attention for --alignment / --attention-plot

    def __init__(self, model, tokenizer: Tokenizer, cfg, manifest: dict):
        self.model, self.tokenizer, self.cfg, self.manifest = model, tokenizer, cfg, manifest
        self.max_len = cfg.model.max_len

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", threads: int = 0) -> CT2Translator:
        """Open an export dir; `threads` 0 lets CTranslate2 use every core."""
        d = Path(path)
        manifest = read_manifest(d)
        try:
            import ctranslate2
        except ImportError:
            raise NMTError(
                f"{d} is a CTranslate2 export: pip install 'nmt[ct2]' (or ctranslate2) to run it"
            ) from None
        if device not in ("cpu", "cuda"):
            raise NMTError(f"--device must be cpu or cuda, not {device!r}")
        if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise NMTError("--device cuda asked for, but no CUDA device is available")
        cfg = _config_view(manifest["config"])
        names = list(manifest["spm"])
        tokenizer = Tokenizer.from_files(*(d / n for n in names))
        try:
            model = ctranslate2.Translator(str(d), device=device, intra_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise NMTError(f"{d}: CTranslate2 cannot load the model ({str(e)[:120]})") from None
        return cls(model, tokenizer, cfg, manifest)

    def seed(self, seed: int) -> None:
        import ctranslate2

        ctranslate2.set_random_seed(seed)

    def search(self, ids: list[list[int]], opts: SearchOptions, batch_tokens: int) -> list[list]:
        """n-best `Hypothesis` lists in input order.

        Beam search and sampling batches share one length limit. Greedy search is
        prefix-consistent, so its batches are cut by size alone and run to their largest limit;
        the few hypotheses that reach their own limit are decoded again under it, which keeps
        every output and score what a per-sentence limit gives (and batches full: small int8
        batches are slow)."""
        limits = [length_limit(len(s), opts, self.max_len) for s in ids]
        greedy = opts.beam == 1 and not opts.sample
        results = self._batches(ids, limits, opts, batch_tokens, shared_limit=not greedy)
        if greedy:
            redo = [i for i, hyps in enumerate(results) if len(hyps[0].tokens) >= limits[i]]
            again = self._batches(
                [ids[i] for i in redo], [limits[i] for i in redo], opts, batch_tokens, True
            )
            for i, hyps in zip(redo, again):
                results[i] = hyps
        return results

    def _batches(self, ids, limits, opts: SearchOptions, batch_tokens: int, shared_limit: bool):
        """Decode `ids` in length-sorted batches within the token budget, each batch up to the
        largest limit in it (with `shared_limit`, every sentence of a batch has that limit)."""
        order = sorted(range(len(ids)), key=lambda i: (limits[i], len(ids[i])))
        budget = max(batch_tokens // max(1, opts.beam // 2), 64)
        results: list[list] = [[] for _ in ids]
        batch: list[int] = []
        for i in order + [-1]:
            full = batch and (
                i < 0
                or (shared_limit and limits[i] != limits[batch[0]])
                or len(ids[i]) * (len(batch) + 1) > budget
            )
            if full:
                limit = max(limits[j] for j in batch)
                for j, hyps in zip(batch, self._batch([ids[j] for j in batch], opts, limit)):
                    results[j] = hyps
                batch = []
            batch.append(i)
        return results

    def _batch(self, ids: list[list[int]], opts: SearchOptions, limit: int) -> list[list]:
        src = self.tokenizer.src
        pieces = [[src.id_to_piece(t) for t in seq] for seq in ids]
        out = self.model.translate_batch(
            pieces,
            beam_size=opts.beam,
            num_hypotheses=opts.beam,  # every finished hypothesis: ranked below
            length_penalty=0.0,
            no_repeat_ngram_size=opts.no_repeat_ngram,
            max_input_length=0,
            max_decoding_length=limit,
            min_decoding_length=0,
            return_scores=True,
            return_attention=opts.attention,
            return_end_token=True,
            **(self._sampling(opts) if opts.sample else {}),
        )
        tgt = self.tokenizer.tgt
        ranked = [self._rank(r, opts, tgt) for r in out]
        if opts.attention and opts.beam > 1:
            # CTranslate2's beam search returns a wrong first attention row (another batch
            # entry's). The first step reads only BOS, so every hypothesis of a sentence shares
            # that row: take it from one greedy step.
            first = self.model.translate_batch(
                pieces,
                beam_size=1,
                max_decoding_length=1,
                max_input_length=0,
                min_decoding_length=0,
                return_attention=True,
                return_end_token=True,
            )
            for hyps, r in zip(ranked, first):
                for h in hyps:
                    h.attention[0] = r.attention[0][0]
        return ranked

    @staticmethod
    def _sampling(opts: SearchOptions) -> dict:
        """CTranslate2's sampling options (top-k 0: the whole vocabulary, as in `nmt.search`)."""
        return dict(
            sampling_topk=opts.top_k,
            sampling_topp=opts.top_p,
            sampling_temperature=opts.temperature,
        )

    @staticmethod
    def _rank(result, opts: SearchOptions, tgt) -> list[Hypothesis]:
        hyps = []
        for k, pieces in enumerate(result.hypotheses):
            tokens = [tgt.piece_to_id(p) for p in pieces]
            n = len(tokens)  # steps taken, EOS included
            if tokens and tokens[-1] == EOS_ID:
                tokens = tokens[:-1]
            score = result.scores[k]
            if opts.beam > 1:
                score /= length_penalty(n, opts.alpha)
            att = None
            if opts.attention:
                import numpy as np

                att = np.asarray(result.attention[k], dtype=np.float32)  # (steps, S)
            hyps.append(Hypothesis(tokens, score, att))
        return sorted(hyps, key=lambda h: -h.score)[: opts.n_best]


def _config_view(raw: dict) -> SimpleNamespace:
    """The exported model's config as attributes (`cfg.model.max_len`, `cfg.data.dir`). It was
    checked when exported; `nmt.config.Config` would check it again through the backend tables,
    which import torch."""
    return SimpleNamespace(**{k: SimpleNamespace(**v) for k, v in raw.items()})


def length_limit(src_len: int, opts: SearchOptions, max_len: int) -> int:
    """Output tokens allowed (EOS included), in float32 as `nmt.search.generate` computes it."""
    limit = int(_f32(_f32(_f32(opts.max_len_a) * src_len) + _f32(opts.max_len_b)))
    return min(max(limit, 1), max_len)


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]
