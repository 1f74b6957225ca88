"""Language codes: one normalisation for every place that decides by language (the SentencePiece
character coverage in preprocessing, the BLEU tokenizer in validation, `evaluate` and `report`).

Codes are read BCP-47 style: the primary subtag decides, script and region subtags are dropped
(`zh-Hans-CN`, `zh_CN`, `ZH` -> `zh`), ISO 639-2/3 codes map to their ISO 639-1 language and the
members of a macrolanguage to it (`cmn`, `yue`, `zho` -> `zh`; `jpn` -> `ja`).
"""

from __future__ import annotations

import re

# ISO 639-3 / 639-2 (B and T) codes -> ISO 639-1, for the languages whose choice of tokenizer
# or coverage differs, and the common ones users write in three letters.
_ISO639_3 = {
    # Chinese: the macrolanguage, its bibliographic code, and its member languages
    **dict.fromkeys(
        ("zho", "chi", "cmn", "yue", "wuu", "hak", "nan", "gan", "hsn", "cjy", "cdo", "cpx",
         "czh", "czo", "mnp", "lzh"),
        "zh",
    ),
    "jpn": "ja",
    "kor": "ko",
    "eng": "en", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "ces": "cs", "cze": "cs",
    "spa": "es", "ita": "it", "por": "pt", "nld": "nl", "dut": "nl", "rus": "ru", "ara": "ar",
    "tha": "th", "vie": "vi", "tur": "tr", "pol": "pl", "ukr": "uk", "hin": "hi",
}  # fmt: skip
CJK = ("zh", "ja", "ko")  # languages written without spaces between words (or with rare ones)
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def base(code: str | None) -> str | None:
    """The language of a code (`zh-Hans` -> `zh`, `cmn` -> `zh`, `DE_de` -> `de`); None for none."""
    if not code or not code.strip():
        return None
    primary = re.split(r"[-_]", code.strip())[0].lower()
    return _ISO639_3.get(primary, primary)


def is_cjk(code: str | None) -> bool:
    return base(code) in CJK


def looks_cjk(lines: list[str], sample: int = 200) -> bool:
    """Whether most non-space characters of (a sample of) `lines` are Chinese, Japanese or
    Korean script."""
    text = "".join(lines[:sample]).replace(" ", "")
    return bool(text) and len(_CJK_CHAR.findall(text)) > len(text) / 2
