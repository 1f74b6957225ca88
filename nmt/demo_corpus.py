"""Offline synthetic English-to-German parallel corpus for the CPU demo.

The corpus comes from a small hand-written grammar, so the model has to learn real
translation phenomena rather than copying tokens:

* Noun phrases: definite ("the" -> der/die/das) or indefinite ("a" -> ein/eine, bare plural),
  optionally with one attributive adjective. German articles and adjective endings agree with
  the noun's gender (m/f/n), number and case: nominative subjects ("der große Hund",
  "ein großer Hund"), accusative objects ("den großen Hund", "einen großen Hund") and dative
  after prepositions ("mit dem Hund", "mit einer kleinen Katze", "mit großen Hunden").
* Transitive verbs in the present tense, agreeing with a 3rd person singular or plural subject
  ("sees"/"see" -> "sieht"/"sehen"), or in the present perfect ("has seen" -> "hat ... gesehen",
  with the participle moved to the end of the clause).
* Word order: a fronted adverb makes the German verb come second ("Today the dog sees a cat."
  -> "Heute sieht der Hund eine Katze."); subordinate clauses (weil/obwohl/wenn/während and
  "dass") put the finite verb last ("..., weil die Frau den Hund sieht."); a fronted
  subordinate clause is followed by the finite verb of the main clause.

Sentences are capitalised and end with a period. Everything is deterministic given a seed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

# --- vocabulary -------------------------------------------------------------------------------
# Nouns: English singular, English plural, gender, German singular, German plural.
_ANIMATE = """
man men m Mann Männer;  woman women f Frau Frauen;  child children n Kind Kinder
dog dogs m Hund Hunde;  cat cats f Katze Katzen;  horse horses n Pferd Pferde
bird birds m Vogel Vögel;  teacher teachers m Lehrer Lehrer;  doctor doctors m Arzt Ärzte
girl girls n Mädchen Mädchen;  mouse mice f Maus Mäuse;  cow cows f Kuh Kühe
king kings m König Könige;  queen queens f Königin Königinnen;  friend friends m Freund Freunde
sister sisters f Schwester Schwestern;  brother brothers m Bruder Brüder
baker bakers m Bäcker Bäcker;  pig pigs n Schwein Schweine;  cook cooks m Koch Köche
"""
_THINGS = """
house houses n Haus Häuser;  car cars n Auto Autos;  book books n Buch Bücher
apple apples m Apfel Äpfel;  ball balls m Ball Bälle;  table tables m Tisch Tische
chair chairs m Stuhl Stühle;  cup cups f Tasse Tassen;  door doors f Tür Türen
window windows n Fenster Fenster;  letter letters m Brief Briefe;  flower flowers f Blume Blumen
tree trees m Baum Bäume;  garden gardens m Garten Gärten;  bag bags f Tasche Taschen
key keys m Schlüssel Schlüssel;  bottle bottles f Flasche Flaschen;  glass glasses n Glas Gläser
boat boats n Boot Boote;  train trains m Zug Züge;  city cities f Stadt Städte
picture pictures n Bild Bilder;  lamp lamps f Lampe Lampen;  clock clocks f Uhr Uhren
shoe shoes m Schuh Schuhe;  hat hats m Hut Hüte;  cake cakes m Kuchen Kuchen
egg eggs n Ei Eier;  box boxes f Kiste Kisten;  bed beds n Bett Betten
"""
# Adjectives: English, German stem.
_ADJECTIVES = """
big groß;  small klein;  old alt;  young jung;  red rot;  blue blau;  green grün;  new neu
good gut;  fast schnell;  slow langsam;  beautiful schön;  tired müde;  happy glücklich
sad traurig;  strange seltsam;  cheap billig;  warm warm;  cold kalt;  white weiß
black schwarz;  quiet leise;  loud laut;  clever klug;  friendly freundlich;  heavy schwer
brown braun;  yellow gelb
"""
# Transitive verbs (accusative object): English base, 3sg, participle; German 3sg, 3pl, participle.
_VERBS = """
see sees seen sieht sehen gesehen;  find finds found findet finden gefunden
buy buys bought kauft kaufen gekauft;  sell sells sold verkauft verkaufen verkauft
love loves loved liebt lieben geliebt;  like likes liked mag mögen gemocht
hear hears heard hört hören gehört;  visit visits visited besucht besuchen besucht
ask asks asked fragt fragen gefragt;  carry carries carried trägt tragen getragen
draw draws drawn zeichnet zeichnen gezeichnet;  paint paints painted malt malen gemalt
wash washes washed wäscht waschen gewaschen;  catch catches caught fängt fangen gefangen
feed feeds fed füttert füttern gefüttert;  call calls called ruft rufen gerufen
bring brings brought bringt bringen gebracht;  hold holds held hält halten gehalten
pull pulls pulled zieht ziehen gezogen;  push pushes pushed schiebt schieben geschoben
know knows known kennt kennen gekannt;  need needs needed braucht brauchen gebraucht
take takes taken nimmt nehmen genommen;  build builds built baut bauen gebaut
open opens opened öffnet öffnen geöffnet;  meet meets met trifft treffen getroffen
forget forgets forgotten vergisst vergessen vergessen
greet greets greeted begrüßt begrüßen begrüßt
watch watches watched beobachtet beobachten beobachtet
"""
# Verbs taking a "that" clause: English base, 3sg; German 3sg, 3pl.
_SAY_VERBS = """
say says sagt sagen;  know knows weiß wissen;  think thinks denkt denken
believe believes glaubt glauben;  hope hopes hofft hoffen
"""
# Prepositions governing the dative (English, German); none of them contracts with "dem".
PREPOSITIONS = [
    ("with", "mit"),
    ("behind", "hinter"),
    ("next to", "neben"),
    ("under", "unter"),
    ("in front of", "vor"),
    ("on", "auf"),
]
ADVERBS = [("today", "heute"), ("now", "jetzt"), ("sometimes", "manchmal"), ("usually", "meistens")]
CONJUNCTIONS = [("because", "weil"), ("although", "obwohl"), ("when", "wenn"), ("while", "während")]

# --- German inflection tables (key: gender m/f/n, or "pl") -------------------------------------
DEF_ARTICLE = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
INDEF_ARTICLE = {
    "nom": {"m": "ein", "f": "eine", "n": "ein"},
    "acc": {"m": "einen", "f": "eine", "n": "ein"},
    "dat": {"m": "einem", "f": "einer", "n": "einem"},
}
WEAK_ENDING = {  # adjective after a definite article
    "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
MIXED_ENDING = {  # adjective after ein/eine/ein
    "nom": {"m": "er", "f": "e", "n": "es"},
    "acc": {"m": "en", "f": "e", "n": "es"},
    "dat": {"m": "en", "f": "en", "n": "en"},
}
STRONG_PLURAL_ENDING = {"nom": "e", "acc": "e", "dat": "en"}  # adjective in a bare plural


class Noun(NamedTuple):
    en: str
    en_pl: str
    gender: str
    de: str
    de_pl: str


class Adjective(NamedTuple):
    en: str
    de: str


class Verb(NamedTuple):
    en: str
    en_3sg: str
    en_part: str
    de_3sg: str
    de_3pl: str
    de_part: str


class SayVerb(NamedTuple):
    en: str
    en_3sg: str
    de_3sg: str
    de_3pl: str


class NP(NamedTuple):
    """A noun phrase: noun, number, definiteness and an optional adjective."""

    noun: Noun
    plural: bool = False
    definite: bool = True
    adj: Adjective | None = None


def _parse(table: str, row_type: type) -> list:
    """Parse a table (rows split by ';' or newlines, fields by spaces) into `row_type` rows."""
    return [row_type(*row.split()) for row in table.replace("\n", ";").split(";") if row.strip()]


ANIMATE_NOUNS: list[Noun] = _parse(_ANIMATE, Noun)
NOUNS: list[Noun] = ANIMATE_NOUNS + _parse(_THINGS, Noun)
ADJECTIVES: list[Adjective] = _parse(_ADJECTIVES, Adjective)
VERBS: list[Verb] = _parse(_VERBS, Verb)
SAY_VERBS: list[SayVerb] = _parse(_SAY_VERBS, SayVerb)


# --- rendering --------------------------------------------------------------------------------
def _inflect(stem: str, ending: str) -> str:
    """Attach an adjective ending, dropping its 'e' after a stem ending in 'e' (müde + en)."""
    return stem + (ending[1:] if stem.endswith("e") else ending)


def noun_phrase(np: NP, case: str) -> tuple[str, str]:
    """Render a noun phrase in English and in German for case 'nom', 'acc' or 'dat'."""
    n, key = np.noun, ("pl" if np.plural else np.noun.gender)
    en_words = ([np.adj.en] if np.adj else []) + [n.en_pl if np.plural else n.en]
    de_noun = n.de_pl if np.plural else n.de
    if np.plural and case == "dat" and de_noun[-1] not in "ns":
        de_noun += "n"  # dative plural: Hunden, Kindern
    if np.definite:
        en_words.insert(0, "the")
        article, ending = DEF_ARTICLE[case][key], WEAK_ENDING[case][key]
    elif np.plural:
        article, ending = "", STRONG_PLURAL_ENDING[case]
    else:
        en_words.insert(0, "an" if en_words[0][0] in "aeiou" else "a")
        article, ending = INDEF_ARTICLE[case][key], MIXED_ENDING[case][key]
    de_words = [article] if article else []
    de_words += ([_inflect(np.adj.de, ending)] if np.adj else []) + [de_noun]
    return " ".join(en_words), " ".join(de_words)


def prep_phrase(prep: tuple[str, str], np: NP) -> tuple[str, str]:
    """Render a prepositional phrase; the German noun phrase is in the dative."""
    en, de = noun_phrase(np, "dat")
    return f"{prep[0]} {en}", f"{prep[1]} {de}"


def clause(
    subj: NP,
    verb: Verb,
    obj: NP,
    *,
    perfect: bool = False,
    pp: tuple[tuple[str, str], NP] | None = None,
    order: str = "main",
) -> tuple[str, str]:
    """Render subject-verb-object; German order is 'main' (SVO), 'v2' (VSO) or 'sub' (SOV)."""
    (s_en, s_de), (o_en, o_de) = noun_phrase(subj, "nom"), noun_phrase(obj, "acc")
    if perfect:
        en_verb = f"{'have' if subj.plural else 'has'} {verb.en_part}"
        finite, rest = ("haben" if subj.plural else "hat"), [verb.de_part]
    else:
        en_verb = verb.en if subj.plural else verb.en_3sg
        finite, rest = (verb.de_3pl if subj.plural else verb.de_3sg), []
    middle = [o_de]
    en = [s_en, en_verb, o_en]
    if pp is not None:
        p_en, p_de = prep_phrase(*pp)
        en.append(p_en)
        middle.append(p_de)
    if order == "main":
        de = [s_de, finite, *middle, *rest]
    elif order == "v2":
        de = [finite, s_de, *middle, *rest]
    elif order == "sub":
        de = [s_de, *middle, *rest, finite]
    else:
        raise ValueError(f"unknown word order {order!r}")
    return " ".join(en), " ".join(de)


def sentence(en: str, de: str) -> tuple[str, str]:
    """Capitalise the first letter of both sides and add the final period."""
    return en[0].upper() + en[1:] + ".", de[0].upper() + de[1:] + "."


# --- random generation ------------------------------------------------------------------------
def _random_np(rng: random.Random, pool: list[Noun]) -> NP:
    """Draw a noun phrase from `pool` with random number, definiteness and adjective."""
    adj = rng.choice(ADJECTIVES) if rng.random() < 0.4 else None
    return NP(rng.choice(pool), rng.random() < 0.3, rng.random() < 0.6, adj)


def _random_clause(rng: random.Random, order: str) -> tuple[str, str]:
    """Draw a random transitive clause (animate subject) in the given German word order."""
    subj, verb, obj = _random_np(rng, ANIMATE_NOUNS), rng.choice(VERBS), _random_np(rng, NOUNS)
    pp = (rng.choice(PREPOSITIONS), _random_np(rng, NOUNS)) if rng.random() < 0.25 else None
    return clause(subj, verb, obj, perfect=rng.random() < 0.3, pp=pp, order=order)


def random_pair(rng: random.Random) -> tuple[str, str]:
    """Draw one (english, german) sentence pair from the grammar."""
    kind = rng.random()
    if kind < 0.3:  # The dog sees the cat.
        return sentence(*_random_clause(rng, "main"))
    if kind < 0.45:  # Today the dog sees the cat. -> Heute sieht der Hund die Katze.
        adv_en, adv_de = rng.choice(ADVERBS)
        en, de = _random_clause(rng, "v2")
        return sentence(f"{adv_en} {en}", f"{adv_de} {de}")
    conj_en, conj_de = rng.choice(CONJUNCTIONS)
    if kind < 0.7:  # X, because Y. -> X, weil Y(verb last).
        (m_en, m_de), (s_en, s_de) = _random_clause(rng, "main"), _random_clause(rng, "sub")
        return sentence(f"{m_en}, {conj_en} {s_en}", f"{m_de}, {conj_de} {s_de}")
    if kind < 0.8:  # Because Y, X. -> Weil Y(verb last), (verb) X.
        (s_en, s_de), (m_en, m_de) = _random_clause(rng, "sub"), _random_clause(rng, "v2")
        return sentence(f"{conj_en} {s_en}, {m_en}", f"{conj_de} {s_de}, {m_de}")
    subj, say = _random_np(rng, ANIMATE_NOUNS), rng.choice(SAY_VERBS)  # X says that Y.
    (n_en, n_de), (s_en, s_de) = noun_phrase(subj, "nom"), _random_clause(rng, "sub")
    say_en, say_de = (say.en, say.de_3pl) if subj.plural else (say.en_3sg, say.de_3sg)
    return sentence(f"{n_en} {say_en} that {s_en}", f"{n_de} {say_de}, dass {s_de}")


def generate_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return up to n (english, german) pairs with distinct English sides, deterministic in seed."""
    rng, seen, pairs = random.Random(seed), set(), []
    for _ in range(20 * n + 100):  # bounded: never loops forever if the grammar runs dry
        if len(pairs) >= n:
            break
        en, de = random_pair(rng)
        if en not in seen:
            seen.add(en)
            pairs.append((en, de))
    return pairs


def write_corpus(
    out_dir: str | Path,
    n_train: int = 12000,
    n_valid: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> dict[str, int]:
    """Write {train,valid,test}.{en,de} to out_dir (no pair shared across splits); return counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = generate_pairs(n_train + n_valid + n_test, seed)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid)}
    bounds["test"] = (n_train + n_valid, n_train + n_valid + n_test)
    counts = {}
    for split, (lo, hi) in bounds.items():
        chunk = pairs[lo:hi]
        for side, lang in enumerate(("en", "de")):
            text = "".join(pair[side] + "\n" for pair in chunk)
            (out / f"{split}.{lang}").write_text(text, encoding="utf-8")
        counts[split] = len(chunk)
    return counts
