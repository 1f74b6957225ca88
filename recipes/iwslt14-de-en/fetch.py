"""Download a translation corpus from the HF hub into plain files OUT/{train,valid,test}.{src,tgt}.

The hub dataset has a `translation` column of {src: ..., tgt: ...} dicts and the splits train,
validation and test. Needs internet; everything after it (`nmt preprocess`) runs offline.
"""

import argparse
from pathlib import Path

from nmt.files import one_line  # line breaks in a text become spaces

SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--revision", default=None)
    ap.add_argument("--src", required=True)
    ap.add_argument("--tgt", required=True)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    import datasets

    a.out.mkdir(parents=True, exist_ok=True)
    for name, split in SPLITS.items():
        ds = datasets.load_dataset(a.hub, a.config, split=split, revision=a.revision)
        for lang in (a.src, a.tgt):
            tmp = a.out / f".{name}.{lang}.part"
            with open(tmp, "w", encoding="utf-8") as f:
                for batch in ds.iter(batch_size=10_000):
                    f.writelines(one_line(p[lang]) + "\n" for p in batch["translation"])
            tmp.rename(a.out / f"{name}.{lang}")
        print(f"{name}: {len(ds)} pairs -> {a.out}/{name}.{{{a.src},{a.tgt}}}")


if __name__ == "__main__":
    main()
