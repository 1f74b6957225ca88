"""The torch runtime: a trained checkpoint behind the `TranslatorBase` API."""

from __future__ import annotations

from pathlib import Path

import torch

from nmt import checkpoint
from nmt.config import Config
from nmt.errors import NMTError
from nmt.flags import Calibration
from nmt.models.base import use_fast_cuda_kernels
from nmt.models.ensemble import Ensemble
from nmt.search import decode_corpus, score_corpus
from nmt.search_options import Hypothesis, SearchOptions
from nmt.tokenizer import BOS_ID, Tokenizer
from nmt.translator import RuntimeOptions, TranslatorBase


class TorchTranslator(TranslatorBase):
    """A trained torch model with its tokenizer, ready to translate lists of strings."""

    def __init__(self, model, tokenizer: Tokenizer, cfg: Config, device, languages=(None, None)):
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, cfg, device
        self.src_lang, self.tgt_lang = languages
        self.max_len = cfg.model.max_len
        self.has_attention = model.has_attention

    @classmethod
    def open(
        cls, paths: str | Path | list, runtime: RuntimeOptions = RuntimeOptions()
    ) -> TorchTranslator:
        """Rebuild a model from a checkpoint alone; several checkpoints decode as an ensemble."""
        paths = [Path(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
        if runtime.threads > 0:
            torch.set_num_threads(runtime.threads)
        if runtime.device.startswith("cuda") and not torch.cuda.is_available():
            raise NMTError("--device cuda asked for, but no CUDA device is available")
        device = torch.device(runtime.device)
        use_fast_cuda_kernels(device)
        states = checkpoint.read_all(paths)
        models = [checkpoint.model_of(s, p).to(device) for s, p in zip(states, paths)]
        first = states[0]
        model = models[0] if len(models) == 1 else Ensemble(models)
        translator = cls(model, first.tokenizer, first.config, device, first.languages)
        translator.max_len = min(s.config.model.max_len for s in states)
        # the trust flags' confidence threshold is one model's; an ensemble's scores differ
        translator.calibration = (
            Calibration.from_dict(first.calibration) if len(states) == 1 else None
        )
        return translator

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    constrains = True

    def search(self, ids, opts: SearchOptions, constraints=None) -> list[list[Hypothesis]]:
        return decode_corpus(self.model, ids, opts, self.max_len, self.device, constraints)

    def score_ids(self, src_ids, tgt_ids, batch_tokens: int) -> list[float]:
        return score_corpus(self.model, src_ids, tgt_ids, batch_tokens, self.device)

    def attention_maps(self, src_ids: list[int], tokens: list[int]) -> dict[str, torch.Tensor]:
        src = torch.tensor([src_ids], dtype=torch.long, device=self.device)
        tgt_in = torch.tensor([[BOS_ID, *tokens]], dtype=torch.long, device=self.device)
        with torch.no_grad():
            maps = self.model.attention_maps(src, tgt_in)
        return {k: v[0].cpu() for k, v in maps.items()}
