"""The demo's showcase sentences stay inside the synthetic grammar."""

import random
import re

from nmt import demo_corpus as dc
from nmt.demo import DEMO_EXPECTED, DEMO_MIN_BLEU, DEMO_SENTENCES, check


def english_words() -> set[str]:
    """Every English word the demo grammar can produce (lowercase, no punctuation)."""
    words = {"the", "a", "an", "has", "have", "that"}
    for row in (*dc.NOUNS, *dc.ADJECTIVES, *dc.VERBS, *dc.SAY_VERBS):
        words.update(v for k, v in row._asdict().items() if k == "en" or k.startswith("en_"))
    for en, _ in (*dc.PREPOSITIONS, *dc.ADVERBS, *dc.CONJUNCTIONS):
        words.update(en.split())
    return words


def _words(sentence: str) -> list[str]:
    return re.findall(r"[a-z]+", sentence.lower())


def test_every_showcase_word_is_in_the_grammar():
    vocab = english_words()
    for s in DEMO_SENTENCES:
        assert [w for w in _words(s) if w not in vocab] == [], s


def test_english_words_covers_the_generator_and_nothing_unknown():
    vocab = english_words()
    rng = random.Random(0)
    seen = {w for _ in range(3000) for w in _words(dc.random_pair(rng)[0])}
    assert seen <= vocab
    assert "reads" not in vocab  # the verb an earlier showcase used wrongly


def test_showcase_sentences_are_sentences_of_the_grammar():
    noun = {n.en: n for n in dc.NOUNS}
    adj = {a.en: a for a in dc.ADJECTIVES}
    verb = {v.en: v for v in dc.VERBS}
    np = dc.NP
    first = dc.clause(
        np(noun["man"], adj=adj["old"]), verb["see"], np(noun["dog"], adj=adj["small"])
    )
    sub = dc.clause(
        np(noun["woman"]),
        verb["buy"],
        np(noun["car"], definite=False, adj=adj["red"]),
        perfect=True,
        order="sub",
    )
    said = dc.clause(
        np(noun["teacher"]),
        verb["find"],
        np(noun["book"], adj=adj["new"]),
        perfect=True,
        order="sub",
    )
    today = dc.clause(
        np(noun["child"], plural=True),
        verb["hold"],
        np(noun["box"], plural=True, adj=adj["big"]),
        order="v2",
    )
    expected = [
        dc.sentence(f"{first[0]}, because {sub[0]}", f"{first[1]}, weil {sub[1]}"),
        dc.sentence(f"a young woman says that {said[0]}", f"eine junge Frau sagt, dass {said[1]}"),
        dc.sentence(f"today {today[0]}", f"heute {today[1]}"),
    ]
    assert [en for en, _ in expected] == DEMO_SENTENCES
    assert [de for _, de in expected] == DEMO_EXPECTED  # what the demo checks its output against
    assert expected[1][1] == "Eine junge Frau sagt, dass der Lehrer das neue Buch gefunden hat."


def test_the_demo_checks_its_own_result():
    assert check(DEMO_EXPECTED, DEMO_MIN_BLEU) == []
    wrong = ["Heute.", *DEMO_EXPECTED[1:]]
    problems = check(wrong, DEMO_MIN_BLEU - 0.01)
    assert len(problems) == 2
    assert problems[0].startswith("showcase line 1 is 'Heute.', the grammar says 'Der alte Mann")
    assert "test BLEU" in problems[1]
