"""Translation on CTranslate2 from an `nmt export` directory, without importing torch.

`CT2Translator` keeps the torch runtime's semantics (`nmt.translator.TranslatorBase`): our
SentencePiece, `</s>` appended to the source, the length limit `a * len + b` per sentence, beam
search ranked by the GNMT length penalty, n-best with scores, sampling, n-gram blocking and
attention for alignments. CTranslate2 normalises scores by `len ** penalty`, not GNMT's
`((5 + len) / 6) ** alpha`, so beam search runs unnormalised with every finished hypothesis kept
(`num_hypotheses = beam`), and they are ranked here by GNMT.
The export dir's manifest is `nmt.export_dir`'s; `nmt.runtimes` opens dirs of its `CTRANSLATE2`
format here.
"""

from __future__ import annotations

from pathlib import Path

from nmt.config import Config, from_dict
from nmt.errors import NMTError
from nmt.export_dir import read_manifest
from nmt.flags import Calibration
from nmt.length_batches import length_batches
from nmt.search_options import Hypothesis, SearchOptions, length_penalty
from nmt.tokenizer import EOS_ID, Tokenizer
from nmt.translator import RuntimeOptions, TranslatorBase


class CT2Translator(TranslatorBase):
    """An exported model on CTranslate2, with the same API as the torch runtime."""

    has_attention = True  # a Transformer: cross-attention for --alignment / --attention-plot

    def __init__(self, model, tokenizer: Tokenizer, cfg: Config, manifest: dict):
        self.model, self.tokenizer, self.cfg, self.manifest = model, tokenizer, cfg, manifest
        self.max_len = cfg.model.max_len
        self.src_lang, self.tgt_lang = manifest.get("src_lang"), manifest.get("tgt_lang")
        self.calibration = Calibration.from_dict(manifest.get("calibration"))
        # int8 weights: results of a padded sentence depend on its batch (see `search`)
        self.padding_sensitive = str(manifest.get("quantization", "")).startswith("int8")

    @classmethod
    def open(cls, path: str | Path, runtime: RuntimeOptions = RuntimeOptions()) -> CT2Translator:
        """Open an export dir; `threads` 0 lets CTranslate2 use every core."""
        d, device, threads = Path(path), runtime.device, runtime.threads
        if device not in ("cpu", "cuda"):
            raise NMTError(f"an export runs with --device cpu or cuda, not {device!r}")
        manifest = read_manifest(d)
        try:
            import ctranslate2
        except ImportError:
            raise NMTError(
                f"{d} is a CTranslate2 export: pip install 'nmt[ct2]' (or ctranslate2) to run it"
            ) from None
        if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise NMTError("--device cuda asked for, but no CUDA device is available")
        cfg = from_dict(Config, manifest["config"])
        names = list(manifest["spm"])
        tokenizer = Tokenizer.from_files(*(d / n for n in names))
        try:
            model = ctranslate2.Translator(str(d), device=device, intra_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise NMTError(f"{d}: CTranslate2 cannot load the model ({str(e)[:120]})") from None
        try:
            return cls(model, tokenizer, cfg, manifest)
        except ValueError as e:  # the manifest's calibration
            raise NMTError(f"{d}: corrupt manifest ({e}); re-run nmt export") from None

    def seed(self, seed: int) -> None:
        import ctranslate2

        ctranslate2.set_random_seed(seed)

    def search(self, ids, opts: SearchOptions, constraints=None) -> list[list[Hypothesis]]:
        """n-best `Hypothesis` lists in input order.

        Beam search and sampling batches share one length limit. Greedy search is
        prefix-consistent, so its batches are cut by size alone and run to their largest limit;
        the few hypotheses that reach their own limit are decoded again under it, which keeps
        every output and score what a per-sentence limit gives (and batches full: small int8
        batches are slow). On int8 weights a sentence padded in a batch of longer ones can
        score (and rarely translate) differently than alone, so there every batch holds one
        source length: a sentence translates the same wherever it sits in a file."""
        lengths = [len(s) for s in ids]
        limits = opts.length_limits(lengths, self.max_len)
        greedy = opts.beam == 1 and not opts.sample
        if self.padding_sensitive:
            return self._batches(ids, limits, opts, keys=list(zip(limits, lengths)))
        results = self._batches(ids, limits, opts, keys=None if greedy else limits)
        if greedy:
            redo = [i for i, hyps in enumerate(results) if len(hyps[0].tokens) >= limits[i]]
            sub = [limits[i] for i in redo]
            again = self._batches([ids[i] for i in redo], sub, opts, keys=sub)
            for i, hyps in zip(redo, again):
                results[i] = hyps
        return results

    def _batches(self, ids, limits, opts: SearchOptions, keys: list | None):
        """Decode `ids` in length-sorted batches within the token budget, each batch up to the
        largest limit in it; with `keys`, the sentences of a batch share their key."""
        order = sorted(range(len(ids)), key=lambda i: (limits[i], len(ids[i])))
        results: list[list] = [[] for _ in ids]
        for batch in length_batches([len(s) for s in ids], opts.budget(), order, keys):
            limit = max(limits[j] for j in batch)
            for j, hyps in zip(batch, self._batch([ids[j] for j in batch], opts, limit)):
                results[j] = hyps
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

    def score_ids(self, src_ids, tgt_ids, batch_tokens: int) -> list[float]:
        """CTranslate2's `score_batch` (it adds BOS and scores EOS), in length-sorted batches."""
        src, tgt = self.tokenizer.src, self.tokenizer.tgt
        size = [max(len(s), len(t) + 1) for s, t in zip(src_ids, tgt_ids)]
        totals = [0.0] * len(src_ids)
        for batch in length_batches(size, batch_tokens):
            results = self.model.score_batch(
                [[src.id_to_piece(t) for t in src_ids[j]] for j in batch],
                [[tgt.id_to_piece(t) for t in tgt_ids[j]] for j in batch],
                max_input_length=0,
            )
            for j, r in zip(batch, results):
                totals[j] = float(sum(r.log_probs))
        return totals

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
            ended = bool(tokens) and tokens[-1] == EOS_ID
            if ended:
                tokens = tokens[:-1]
            score = result.scores[k]
            if opts.beam > 1:
                score /= length_penalty(n, opts.alpha)
            att = None
            if opts.attention:
                import numpy as np

                att = np.asarray(result.attention[k], dtype=np.float32)  # (steps, S)
            hyps.append(Hypothesis(tokens, score, att, ended))
        return sorted(hyps, key=lambda h: -h.score)[: opts.n_best]
