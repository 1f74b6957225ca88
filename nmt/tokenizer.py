"""SentencePiece subword models: training, special token ids, and encode/decode for src and tgt.

Special token ids are defined here once; every other module reads them from here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt import languages
from nmt.errors import NMTError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_IDS = {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
BOS, EOS = "<s>", "</s>"  # their pieces: SentencePiece's defaults, which training keeps
PAD, UNK = "<pad>", "<unk>"  # the same for padding and unknown text
TAG = re.compile(r"<2([^<>\s]+)>")  # a target-language tag piece: <2de> asks for German


def tag(lang: str) -> str:
    """The target-language tag of `lang` (a user-defined piece of a multilingual vocabulary)."""
    return f"<2{lang}>"


# Sentences SentencePiece trains on (a random sample of bigger corpora): its time and memory
# grow with the sample, and on big corpora it is the slowest and largest preprocessing stage.
SPM_SAMPLE_SENTENCES = 1_000_000


def default_character_coverage(*langs: str) -> float:
    """0.9995 for CJK (large alphabets, rare characters map to <unk>), 1.0 otherwise."""
    return 0.9995 if any(languages.is_cjk(lang) for lang in langs) else 1.0


def train_sentencepiece(
    sentences: Iterable[str],
    model_path: Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    byte_fallback: bool = False,
    input_sentence_size: int = SPM_SAMPLE_SENTENCES,
    what: str = "",
    num_threads: int = 2,
    user_symbols: tuple[str, ...] = (),
) -> Path:
    """Train a SentencePiece model on an iterator of sentences and write it to `model_path`."""
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    raised: list[BaseException] = []  # what the iterator raised: SentencePiece re-raises any
    # exception of its Python iterator as a RuntimeError, which would turn a Ctrl-C into an error

    def watched():
        try:
            yield from sentences
        except BaseException as e:
            raised.append(e)
            raise

    with open(model_path, "wb") as model_writer:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=watched(),
                model_writer=model_writer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                max_sentence_length=1 << 16,
                num_threads=num_threads,
                minloglevel=2,
                **({"user_defined_symbols": list(user_symbols)} if user_symbols else {}),
                **SPECIAL_IDS,
            )
        except RuntimeError as e:
            model_path.unlink(missing_ok=True)
            if raised:
                raise raised[0] from None
            raise NMTError(
                _explain_trainer_error(str(e), vocab_size, character_coverage, what)
            ) from None
    return model_path


def _explain_trainer_error(msg: str, vocab_size: int, coverage: float, what: str) -> str:
    """SentencePiece's error as advice that points the right way, with its numbers."""
    label = f" for {what}" if what else ""
    if m := re.search(
        r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", msg
    ):
        return (
            f"vocabulary size {vocab_size}{label} is larger than the training data supports "
            f"(at most {m[2]} pieces): lower --vocab-size to {m[2]} or less"
        )
    if m := re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", msg):
        return (
            f"vocabulary size {vocab_size}{label} cannot hold the {m[2]} characters and special "
            f"pieces that --character-coverage {coverage:g} keeps: raise --vocab-size to at "
            f"least {m[2]} (well above it, to leave room for subwords), or lower "
            f"--character-coverage below {coverage:g} so that rare characters become <unk>"
        )
    return f"SentencePiece training failed{label}: {msg.strip().splitlines()[-1]}"


class Tokenizer:
    """Source and target SentencePiece processors (the same one when the vocabulary is joint)."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None):
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto if tgt_proto is not None else src_proto
        self.joint = tgt_proto is None or tgt_proto == src_proto
        try:
            self.src = spm.SentencePieceProcessor(model_proto=self.src_proto)
            self.tgt = (
                self.src if self.joint else spm.SentencePieceProcessor(model_proto=self.tgt_proto)
            )
        except Exception:
            raise NMTError("SentencePiece model is corrupt or not a SentencePiece model") from None
        # target-language tags: user-defined source pieces, which SentencePiece numbers right
        # after the special ones (a multilingual vocabulary's; a bilingual one has none)
        self.tags: dict[str, int] = {}
        i = len(SPECIAL_IDS)
        while i < self.src.get_piece_size() and (m := TAG.fullmatch(self.src.id_to_piece(i))):
            self.tags[m[1]] = i
            i += 1
        hidden = {PAD_ID, BOS_ID, EOS_ID} | (set(self.tags.values()) if self.joint else set())
        self._hidden = frozenset(hidden)

    @property
    def vocabulary(self) -> tuple[bytes, bytes]:
        """The SentencePiece models' bytes: equal for tokenizers that encode alike."""
        return self.src_proto, self.tgt_proto

    @classmethod
    def from_files(cls, src_model: Path, tgt_model: Path | None = None) -> Tokenizer:
        """Load from `.model` files; a missing file is a one-line error."""
        protos = []
        for path in [src_model] + ([tgt_model] if tgt_model else []):
            if not Path(path).is_file():
                raise NMTError(f"SentencePiece model not found: {path}")
            protos.append(Path(path).read_bytes())
        return cls(*protos)

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, sentences: list[str], tgt_lang: str | None = None) -> list[list[int]]:
        """Source ids, each sentence closed by EOS and, for a multilingual vocabulary, opened by
        the tag of `tgt_lang`: the one sentence -> ids function that preprocessing and
        translation both call."""
        prefix = [self.tag_id(tgt_lang)] if self.tags else []
        return [prefix + ids + [EOS_ID] for ids in self.src.encode(sentences)]

    def tag_id(self, lang: str | None) -> int:
        """The id of `lang`'s tag in a multilingual vocabulary, `lang` in any spelling of its
        language (`de-DE`, `DE`, `deu` for `de`: `languages.base`) where one tag is that
        language; an error naming the languages there are when `lang` is none of them."""
        if lang not in self.tags and lang:
            same = [t for t in self.tags if languages.base(t) == languages.base(lang)]
            lang = same[0] if len(same) == 1 else lang
        if lang not in self.tags:
            known = ", ".join(sorted(self.tags))
            if not lang:
                raise NMTError(
                    f"no target language: this multilingual model writes {known} (give --tgt-lang)"
                )
            raise NMTError(f"target language {lang!r}: this multilingual model writes {known}")
        return self.tags[lang]

    def sample(
        self, srcs: list[str], tgts: list[str], alpha: float, nbest: int, seeds
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Source and target ids as `encode_src` / `encode_tgt` give them, each sentence cut at
        random among its segmentations (subword regularisation: unigram sampling with smoothing
        `alpha` over the `nbest` best, -1: all; for a BPE model, BPE-dropout with probability
        `alpha`). The draws depend on the two `seeds` (source, target) alone: SentencePiece
        seeds a thread's generator once, from the global seed, when the thread first draws, so
        each side is encoded on one thread (`num_threads=1`) started after its seed is set."""
        kw = dict(enable_sampling=True, alpha=alpha, nbest_size=nbest, num_threads=1)
        src = self._seeded(lambda: self.src.encode(srcs, **kw), int(seeds[0]))
        tgt = self._seeded(lambda: self.tgt.encode(tgts, **kw), int(seeds[1]))
        return [ids + [EOS_ID] for ids in src], tgt  # the caller adds a tag where there is one

    @staticmethod
    def sampling_warning() -> str | None:
        """Why a resumed run with subword sampling will not repeat the interrupted one's draws,
        or None. SentencePiece 0.2.0 and 0.2.1 draw from the seed alone; 0.2.2 and 0.2.3 draw
        differently in every process whatever the seed (measured)."""
        if tuple(int(x) for x in re.findall(r"\d+", spm.__version__)[:3]) < (0, 2, 2):
            return None
        return (
            f"SentencePiece {spm.__version__} draws differently in every process whatever the "
            "seed: with subword sampling, a resumed run does not repeat the uninterrupted run's "
            "segmentations (SentencePiece 0.2.0 and 0.2.1 do)"
        )

    @staticmethod
    def _seeded(encode, seed: int):
        """`encode()` on a new thread whose SentencePiece generator starts from `seed`."""
        out: list = []

        def run() -> None:
            try:
                out.append(encode())
            except Exception as e:  # raised in the caller's thread
                out.append(e)

        spm.set_random_generator_seed(seed)
        thread = threading.Thread(target=run, name="nmt-subword-sampling")
        thread.start()
        thread.join()
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]

    def uncovered(self, text: str) -> list[str]:
        """The spans of a source text that the vocabulary does not cover (each read as <unk>)."""
        ids = self.src.encode(text)
        if UNK_ID not in ids:
            return []
        pieces = self.src.encode(text, out_type=str)  # the same segmentation, as text
        return [p.replace("\u2581", " ").strip() for i, p in zip(ids, pieces) if i == UNK_ID]

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def encode_tgt(self, sentences: list[str]) -> list[list[int]]:
        """Target ids without BOS/EOS (the batcher adds them)."""
        return self.tgt.encode(sentences)

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def decode_tgt(self, ids: list[int]) -> str:
        """Text of target ids; special pieces and target-language tags never show."""
        return self.tgt.decode([i for i in ids if i not in self._hidden])
