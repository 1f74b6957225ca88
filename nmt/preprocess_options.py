"""What `nmt preprocess` is asked for, with the one set of defaults that its flags and the Python
API share: where the corpus comes from (`CorpusInputs`) and how it is cleaned and encoded
(`PreprocessSettings`, the flag fields of `nmt.preprocess.PreprocessOptions`).

Each field's metadata names its command-line flag and help text (`nmt.cli` builds the flags of
`nmt preprocess` from it). Free of numpy, pyarrow and sentencepiece, so `nmt --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.checks import flag as _flag

HUB_SPLITS = "train,validation,test"  # hub split names for train,valid,test
VOCAB_SIZE = 8000


@dataclass(frozen=True)
class CorpusInputs:
    """The corpus as `nmt preprocess` names it: the languages (`--src`/`--tgt`, each `--pair`
    SRC:TGT, or a `--data-spec` file), and where the splits come from: aligned plain files
    (PREFIX.{src,tgt}[.gz]), TSV/JSONL tables (with column names), or a hub dataset
    (`nmt.sources.corpus_pairs` reads it)."""

    src: str | None = field(
        default=None, metadata=_flag("--src", "Source language code (e.g. de).", "-s")
    )
    tgt: str | None = field(
        default=None, metadata=_flag("--tgt", "Target language code (e.g. en).", "-t")
    )
    pair: list[str] | None = field(  # "SRC:TGT" each
        default=None,
        metadata=_flag(
            "--pair",
            "A language pair SRC:TGT instead of --src/--tgt; repeat it for one multilingual "
            "data dir (each prefix read as PREFIX.SRC and PREFIX.TGT per pair; target-language "
            "tags where there are several targets).",
        ),
    )
    data_spec: Path | None = field(
        default=None,
        metadata=_flag(
            "--data-spec",
            "YAML listing the pairs, each with its own files and weight (pairs: - pair: "
            "SRC:TGT, train: PREFIX, valid: PREFIX, test: PREFIX, weight: 1), instead of "
            "--pair and the prefixes.",
        ),
    )
    train_prefix: str | None = field(
        default=None, metadata=_flag("--train-prefix", "Plain files PREFIX.{src,tgt}[.gz].")
    )
    valid_prefix: str | None = field(
        default=None, metadata=_flag("--valid-prefix", "Validation PREFIX.{src,tgt}[.gz].")
    )
    test_prefix: str | None = field(
        default=None, metadata=_flag("--test-prefix", "Test PREFIX.{src,tgt}[.gz].")
    )
    train_file: str | None = field(
        default=None, metadata=_flag("--train-file", "TSV or JSONL training file.")
    )
    valid_file: str | None = field(
        default=None, metadata=_flag("--valid-file", "TSV or JSONL validation file.")
    )
    test_file: str | None = field(
        default=None, metadata=_flag("--test-file", "TSV or JSONL test file.")
    )
    src_column: str | None = field(
        default=None, metadata=_flag("--src-column", "Source column (default: --src).")
    )
    tgt_column: str | None = field(
        default=None, metadata=_flag("--tgt-column", "Target column (default: --tgt).")
    )
    hub: str | None = field(
        default=None, metadata=_flag("--hub", "HF hub dataset name (needs internet).")
    )
    hub_config: str | None = field(
        default=None, metadata=_flag("--hub-config", "HF hub dataset config.")
    )
    hub_splits: str | None = field(  # None: HUB_SPLITS
        default=None,
        metadata=_flag(
            "--hub-splits", f"Hub split names for train,valid,test (default: {HUB_SPLITS})."
        ),
    )

    @property
    def multilingual(self) -> bool:
        """Whether the pairs make a multilingual data dir: a data spec or several --pair."""
        return self.data_spec is not None or len(self.pair or ()) > 1


@dataclass(frozen=True, kw_only=True)
class PreprocessSettings:
    """How the corpus is cleaned and encoded. The options of a new SentencePiece model are None
    where not given: `PreprocessOptions` fills in their defaults, and refuses them beside
    `spm_model` (a reused model takes none)."""

    vocab_size: int | None = field(  # None: VOCAB_SIZE
        default=None,
        metadata=_flag("--vocab-size", f"SentencePiece vocabulary size ({VOCAB_SIZE})."),
    )
    model_type: str | None = field(  # None: unigram
        default=None, metadata=_flag("--model-type", "unigram (the default) or bpe.")
    )
    joint: bool | None = field(  # None: one vocabulary
        default=None,
        metadata=_flag("--joint/--separate", "One vocabulary (the default) or one per side."),
    )
    character_coverage: float | None = field(  # None: chosen from the languages
        default=None,
        metadata=_flag(
            "--character-coverage",
            "SentencePiece character coverage (default 1.0; 0.9995 for zh/ja/ko).",
        ),
    )
    byte_fallback: bool | None = field(  # None: no byte pieces
        default=None,
        metadata=_flag(
            "--byte-fallback",
            "Spell characters outside the vocabulary as UTF-8 byte pieces instead of <unk> "
            "(the model learns to copy those it saw as bytes in training).",
        ),
    )
    spm_model: Path | None = field(  # kept as text in PreprocessOptions (its JSON meta)
        default=None,
        metadata=_flag(
            "--spm-model",
            "Encode with an existing SentencePiece model instead of training one: a data "
            "dir's, a checkpoint's (.pt) or a .model file (to fine-tune a model on new data); "
            "reports how well it covers the new data.",
        ),
    )
    max_len: int = field(  # subword tokens, training pairs only
        default=250,
        metadata=_flag("--max-len", "Drop training pairs longer than this (subwords)."),
    )
    max_ratio: float = field(
        default=3.0,
        metadata=_flag("--max-ratio", "Drop training pairs with a longer length ratio."),
    )
    dedupe: bool = field(
        default=False, metadata=_flag("--dedupe", "Drop duplicate training pairs.")
    )
    input_sentence_size: int | None = field(  # None: nmt.tokenizer.SPM_SAMPLE_SENTENCES
        default=None,
        metadata=_flag(
            "--input-sentence-size",
            "Sentences sampled for SentencePiece training (default 1,000,000).",
        ),
    )
    num_proc: int = field(
        default=1,
        metadata=_flag(
            "--num-proc", "Worker processes for cleaning and encoding (e.g. the number of cores)."
        ),
    )
