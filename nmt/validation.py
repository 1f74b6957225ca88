"""Validation during training: loss, perplexity and sacreBLEU of a search on the data dir's valid
split (one set per pair of a multilingual data dir, and their mean) and on `train.extra_valid`'s
data dirs (the forgetting guard); `Validator` holds a run's sets and the trust flags'
calibration of its last validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt import datadir, files, scores
from nmt.batching import Batch, bucket_batches, collate
from nmt.config import Config
from nmt.errors import NMTError
from nmt.flags import Calibration
from nmt.search import decode_corpus
from nmt.search_options import DecodeFlags, SearchOptions, mean_logprob
from nmt.tokenizer import PAD_ID


@dataclass
class ValidData:
    batches: list[Batch]  # teacher-forced loss
    src: list[list[int]]  # source ids for BLEU
    refs: list[str]  # raw references, aligned with `src`
    tgt_lang: str | None  # the data's target language: picks the BLEU tokenizer
    ref_ratios: list[float]  # reference/source length in pieces: the trust flags' range


def validation_data(
    cfg: Config, device, data_dir: str | None = None, pair: str | None = None
) -> ValidData | None:
    """The valid split of `data_dir` (default: the run's), or of one `pair` of a multilingual
    data dir, within the model's length limit; None when the data dir has none."""
    data_dir = data_dir or cfg.data.dir
    if not datadir.has_split(data_dir, "valid"):
        return None
    ds = datadir.load_encoded(data_dir, "valid")
    meta = datadir.read_meta(data_dir)
    start, end = datadir.pair_rows(meta, "valid").get(pair, (0, len(ds)))
    rows, max_len = ds[start:end], cfg.model.max_len
    texts = rows.get("src_text")  # a blank source is EOS alone, or a tag and EOS
    blank = [not x.strip() for x in texts] if texts else [s <= 1 for s in rows["src_len"]]
    keep = [
        i
        for i, (s, t) in enumerate(zip(rows["src_len"], rows["tgt_len"]))
        if not blank[i] and s <= max_len and t <= max_len
    ]
    lens = np.asarray(rows["src_len"])[keep], np.asarray(rows["tgt_len"])[keep]
    batches = [
        collate(
            [rows["src_ids"][keep[j]] for j in b], [rows["tgt_ids"][keep[j]] for j in b], device
        )
        for b in bucket_batches(*lens, cfg.train.max_tokens)
    ]
    refs = files.read_text_lines(datadir.raw_text(data_dir, "valid")[1])[start:end]
    src = [rows["src_ids"][i] for i in keep]
    tgt_lang = datadir.pair_names(meta)[pair][1] if pair else meta.tgt_lang
    ratios = [(rows["tgt_len"][i] - 1) / max(rows["src_len"][i] - 1, 1) for i in keep]
    return ValidData(batches, src, [refs[i] for i in keep], tgt_lang, ratios)


def valid_search_options(cfg: Config) -> SearchOptions:
    """The decode options of validation's BLEU search: the model's decode section, searched
    with `train.valid_beam` for the best hypothesis of each line."""
    return DecodeFlags(beam=cfg.train.valid_beam, n_best=1).over(cfg.decode)


@torch.no_grad()
def validation_scores(model, cfg: Config, valid: ValidData, tokenizer, device) -> dict:
    """Validation loss/perplexity (no smoothing) and sacreBLEU of the `valid_search_options`
    search, tokenized for the data's target language."""
    model.eval()
    total, n_tok = 0.0, 0
    for b in valid.batches:  # summed cross-entropy, no smoothing; read back once
        total += model(b.src, b.tgt_in, b.tgt_out, src_lengths=b.src_lengths)
        n_tok += (b.tgt_out != PAD_ID).sum()
    result = {"loss": float(total) / max(int(n_tok), 1)}
    result["ppl"] = math.exp(min(result["loss"], 50))
    if cfg.train.valid_bleu and valid.src:
        n = cfg.train.valid_max_sentences or len(valid.src)
        opts = valid_search_options(cfg)
        hyps = decode_corpus(model, valid.src[:n], opts, cfg.model.max_len, device)
        texts = [tokenizer.decode_tgt(h[0].tokens) for h in hyps]
        result["bleu"] = scores.bleu(texts, valid.refs[:n], valid.tgt_lang)
        logprobs = [mean_logprob(h[0], opts) for h in hyps]
        result["lines"] = (valid.ref_ratios, logprobs)  # for the trust flags' calibration
    model.train()
    return result


def pair_mean(results: list[dict]) -> dict:
    """Validation results averaged over pairs (the one result of a bilingual data dir)."""
    if len(results) == 1:
        return results[0]
    keys = [k for k in results[0] if all(k in r for r in results)]  # BLEU needs lines left
    mean = {k: sum(r[k] for r in results) / len(results) for k in keys}
    if "loss" in mean:
        mean["ppl"] = math.exp(min(mean["loss"], 50))
    return mean


def validation_sets(cfg: Config, meta: datadir.Meta, device) -> dict[str, ValidData] | None:
    """The validation split by pair name ({"": split} for a bilingual data dir); None when the
    data dir has none."""
    names = list(datadir.pair_rows(meta, "valid")) or [None]
    sets = {name or "": validation_data(cfg, device, pair=name) for name in names}
    return None if None in sets.values() else sets


def extra_valid_sets(cfg: Config, tokenizer, device) -> dict[str, ValidData]:
    """train.extra_valid: each data dir's validation split, by a short name (its dir's)."""
    dirs = cfg.train.extra_valid
    names = [Path(d).name for d in dirs]
    names = names if len(set(names)) == len(names) else list(dirs)
    extra = {}
    for name, d in zip(names, dirs):
        if datadir.load_tokenizer(d).vocabulary != tokenizer.vocabulary:
            raise NMTError(
                f"train.extra_valid: data dir {d} has another vocabulary than {cfg.data.dir}"
                f"; encode it with theirs: nmt preprocess --spm-model {cfg.data.dir} ..."
            )
        valid = validation_data(cfg, device, d)
        if valid is None:
            raise NMTError(f"train.extra_valid: data dir {d} has no valid split")
        extra[name] = valid
    return extra


class Validator:
    """A run's validation: its sets (none on a rank that does not validate), the metric that
    picks best.pt (`train.best_metric`, or `train_loss` without a valid split) and the trust
    flags' calibration from the last validation (or the checkpoint resumed from)."""

    def __init__(
        self, cfg: Config, meta: datadir.Meta, tokenizer, device, enabled=True, calibration=None
    ):
        self.cfg, self.tokenizer, self.device = cfg, tokenizer, device
        self.sets = validation_sets(cfg, meta, device) if enabled else None
        self.extra = extra_valid_sets(cfg, tokenizer, device) if enabled else {}
        self.metric = cfg.train.best_metric if self.sets is not None else "train_loss"
        self.calibration: Calibration | None = calibration

    def validate(self, model, progress, log) -> dict:
        """Score the valid split (or take the training loss since the last validation), log and
        record the result in `progress.history`, then score train.extra_valid; returns it."""
        p, result = progress, {}
        if self.metric == "train_loss" and p.since_valid_tokens:
            result["train_loss"] = p.since_valid_loss / p.since_valid_tokens
        p.since_valid_loss, p.since_valid_tokens = 0.0, 0
        if self.sets is not None:
            result = self.score_pairs(model, progress, log)
        if result:
            log.valid(p.step, result, p.train_seconds / 60)
            p.history.append({"step": p.step, **result})
        self.validate_extra(model, progress, log)
        return result

    def score_pairs(self, model, progress, log) -> dict:
        """Each pair's scores (logged where there are several) and their mean; the trust flags'
        calibration over every pair's lines."""
        per_pair = {
            name: validation_scores(model, self.cfg, valid, self.tokenizer, self.device)
            for name, valid in self.sets.items()
        }
        lines = [r.pop("lines") for r in per_pair.values() if "lines" in r]
        if lines:  # the trust flags' thresholds, over every pair's lines
            ratios, logprobs = (sum((list(x[i]) for x in lines), []) for i in (0, 1))
            self.calibration = Calibration.from_validation(ratios, logprobs)
        result = pair_mean(list(per_pair.values()))
        if len(per_pair) > 1:  # a multilingual data dir: each pair, then their mean
            for name, r in per_pair.items():
                log.extra_valid(progress.step, name, r, progress.train_seconds / 60)
        return result

    def validate_extra(self, model, progress, log, warn: bool = True) -> dict[str, float]:
        """Score the train.extra_valid splits and log them; warn where BLEU fell more than
        train.forget_warn below its value at step 0. Returns BLEU by name."""
        p, cfg, bleus = progress, self.cfg.train, {}
        for name, valid in self.extra.items():
            result = validation_scores(model, self.cfg, valid, self.tokenizer, self.device)
            result.pop("lines", None)
            log.extra_valid(p.step, name, result, p.train_seconds / 60)
            if "bleu" not in result:
                continue
            bleus[name] = result["bleu"]
            base = p.extra_base.get(name)
            if warn and base is not None and base - result["bleu"] > cfg.forget_warn:
                log.line(
                    f"warning: BLEU on {name} fell {base - result['bleu']:.2f} below its value "
                    f"at step 0 ({base:.2f} -> {result['bleu']:.2f}; train.forget_warn "
                    f"{cfg.forget_warn:g}): the model is forgetting it"
                )
        return bleus
