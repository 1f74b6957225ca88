"""The built-in synthetic English-German demo corpus."""

import re

import pytest

from nmt import demo_corpus as dc

NOUN = {n.en: n for n in dc.NOUNS}
ADJ = {a.en: a for a in dc.ADJECTIVES}
VERB = {v.en: v for v in dc.VERBS}
WITH = ("with", "mit")


def test_vocabulary_sizes_and_table_shapes():
    assert 40 <= len(dc.NOUNS) <= 60
    assert 20 <= len(dc.ADJECTIVES) <= 30
    assert 20 <= len(dc.VERBS) <= 30
    assert all(n.gender in "mfn" and n.de[0].isupper() for n in dc.NOUNS)
    assert len({n.en for n in dc.NOUNS}) == len(dc.NOUNS)


@pytest.mark.parametrize(
    ("np", "case", "expected"),
    [
        (dc.NP(NOUN["dog"], adj=ADJ["big"]), "nom", ("the big dog", "der große Hund")),
        (dc.NP(NOUN["dog"], adj=ADJ["big"]), "acc", ("the big dog", "den großen Hund")),
        (
            dc.NP(NOUN["dog"], definite=False, adj=ADJ["big"]),
            "nom",
            ("a big dog", "ein großer Hund"),
        ),
        (dc.NP(NOUN["dog"], definite=False), "acc", ("a dog", "einen Hund")),
        (
            dc.NP(NOUN["child"], definite=False, adj=ADJ["small"]),
            "acc",
            ("a small child", "ein kleines Kind"),
        ),
        (
            dc.NP(NOUN["cat"], definite=False, adj=ADJ["old"]),
            "nom",
            ("an old cat", "eine alte Katze"),
        ),
        (dc.NP(NOUN["cat"], adj=ADJ["tired"]), "acc", ("the tired cat", "die müde Katze")),
        (dc.NP(NOUN["house"]), "acc", ("the house", "das Haus")),
        (
            dc.NP(NOUN["dog"], plural=True, adj=ADJ["big"]),
            "nom",
            ("the big dogs", "die großen Hunde"),
        ),
        (dc.NP(NOUN["apple"], plural=True, definite=False), "acc", ("apples", "Äpfel")),
    ],
)
def test_noun_phrase_agreement(np, case, expected):
    assert dc.noun_phrase(np, case) == expected


@pytest.mark.parametrize(
    ("np", "expected"),
    [
        (dc.NP(NOUN["dog"]), ("with the dog", "mit dem Hund")),
        (dc.NP(NOUN["woman"]), ("with the woman", "mit der Frau")),
        (dc.NP(NOUN["child"]), ("with the child", "mit dem Kind")),
        (dc.NP(NOUN["dog"], definite=False), ("with a dog", "mit einem Hund")),
        (
            dc.NP(NOUN["cat"], definite=False, adj=ADJ["small"]),
            ("with a small cat", "mit einer kleinen Katze"),
        ),
        (
            dc.NP(NOUN["dog"], plural=True, definite=False, adj=ADJ["big"]),
            ("with big dogs", "mit großen Hunden"),
        ),
        (dc.NP(NOUN["child"], plural=True), ("with the children", "mit den Kindern")),
    ],
)
def test_prepositional_phrase_takes_dative(np, expected):
    assert dc.prep_phrase(WITH, np) == expected


def test_main_clause_present_and_perfect():
    man, dog = dc.NP(NOUN["man"]), dc.NP(NOUN["dog"], adj=ADJ["big"])
    assert dc.sentence(*dc.clause(man, VERB["see"], dog)) == (
        "The man sees the big dog.",
        "Der Mann sieht den großen Hund.",
    )
    men = dc.NP(NOUN["man"], plural=True)
    assert dc.sentence(*dc.clause(men, VERB["see"], dog, perfect=True)) == (
        "The men have seen the big dog.",
        "Die Männer haben den großen Hund gesehen.",
    )


def test_subordinate_clause_puts_verb_last():
    main = dc.clause(dc.NP(NOUN["man"]), VERB["buy"], dc.NP(NOUN["book"], definite=False))
    sub = dc.clause(
        dc.NP(NOUN["woman"]),
        VERB["see"],
        dc.NP(NOUN["dog"]),
        pp=(WITH, dc.NP(NOUN["cat"])),
        order="sub",
    )
    en, de = dc.sentence(f"{main[0]}, because {sub[0]}", f"{main[1]}, weil {sub[1]}")
    assert en == "The man buys a book, because the woman sees the dog with the cat."
    assert de == "Der Mann kauft ein Buch, weil die Frau den Hund mit der Katze sieht."
    assert de.endswith(" sieht.")
    perfect = dc.clause(
        dc.NP(NOUN["woman"]), VERB["see"], dc.NP(NOUN["dog"]), perfect=True, order="sub"
    )
    assert perfect[1] == "die Frau den Hund gesehen hat"


def test_v2_order_puts_verb_before_subject():
    _, de = dc.clause(
        dc.NP(NOUN["dog"]), VERB["see"], dc.NP(NOUN["cat"], definite=False), order="v2"
    )
    assert de == "sieht der Hund eine Katze"
    with pytest.raises(ValueError):
        dc.clause(dc.NP(NOUN["dog"]), VERB["see"], dc.NP(NOUN["cat"]), order="bogus")


def test_generate_pairs_is_deterministic_and_distinct():
    a, b = dc.generate_pairs(300, seed=7), dc.generate_pairs(300, seed=7)
    assert a == b
    assert a != dc.generate_pairs(300, seed=8)
    assert len(a) == 300 and len(set(a)) == 300 and len({en for en, _ in a}) == 300
    assert dc.generate_pairs(0) == []


def test_generated_sentences_are_well_formed():
    pairs = dc.generate_pairs(500, seed=1)
    for en, de in pairs:
        for text in (en, de):
            assert text[0].isupper() and text.endswith(".") and not text.endswith("..")
            assert "  " not in text and "\n" not in text
        assert en != de
    # Every grammar construction shows up in a sample of this size.
    german = [de for _, de in pairs]
    for marker in (", weil ", ", dass ", ", obwohl ", "Heute ", " gesehen"):
        assert any(marker in de for de in german), marker
    assert any(re.match(r"(Weil|Obwohl|Wenn|Während) ", de) for de in german)


def test_write_corpus(tmp_path):
    out = tmp_path / "corpus"
    counts = dc.write_corpus(out, n_train=400, n_valid=50, n_test=60, seed=3)
    assert counts == {"train": 400, "valid": 50, "test": 60}
    splits = {}
    for split, n in counts.items():
        sides = []
        for lang in ("en", "de"):
            text = (out / f"{split}.{lang}").read_text(encoding="utf-8")
            assert text.endswith("\n")
            lines = text.split("\n")[:-1]
            assert len(lines) == n and all(lines)
            sides.append(lines)
        splits[split] = list(zip(*sides, strict=True))
    train = set(splits["train"])
    train_en = {en for en, _ in train}
    for split in ("valid", "test"):
        assert not train & set(splits[split])
        assert not train_en & {en for en, _ in splits[split]}
    assert not set(splits["valid"]) & set(splits["test"])
    # Same seed, same files.
    dc.write_corpus(str(tmp_path / "again"), n_train=400, n_valid=50, n_test=60, seed=3)
    for name in ("train.en", "test.de"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
