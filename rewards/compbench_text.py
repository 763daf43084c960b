"""Prompt parsing for T2I-CompBench: tokens, coarse part-of-speech tags, noun chunks.

The official evaluators parse prompts with spaCy ``en_core_web_sm`` (``doc.noun_chunks``
for the BLIP-VQA questions, ``token.pos_ == "NOUN"`` for the detector's objects, ``ADJ``
removal for the complex CLIPScore). When spaCy and that model are importable they are used
as-is. Otherwise (the model cannot be downloaded everywhere) a deterministic rule-based
stand-in runs, built to agree with spaCy on the benchmark's prompt shapes:

- Tokens: words (letters/digits, inner ``'``/``-`` kept: "rubik's", "mid-air") and single
  punctuation marks. Chunk text is the slice of the original prompt, as in spaCy.
- Tags from closed-class word lists (determiners, numbers, prepositions, conjunctions,
  pronouns, auxiliaries and common verbs, adverbs incl. ``-ly`` words) and an adjective list
  (colours, shapes, textures, sizes, common descriptive words, ``-ful/-ous/-less/-ish``
  endings). An ``-ing``/``-ed``/``-y`` word is a modifier (ADJ) when it sits inside a noun
  phrase (after a determiner/number/adjective or at a phrase start) and a content word
  follows ("the flickering fire"); ending a phrase after a determiner it is a noun ("a
  painting"); after a noun or verb an ``-ing``/``-ed`` word is a verb ("a man holding").
  A phrase-final adjective-list word after a determiner (+ adjectives) is a noun ("a blue
  orange"). Everything else is NOUN.
- Noun chunks: ``[DET] (NUM|ADJ|NOUN|ADV-before-ADJ)*`` runs that contain a noun, cut after
  their last noun; adjectives joined by "and"/"or"/"," stay in one chunk ("the striped
  black and white cat"); personal pronouns are chunks of their own, as in spaCy.
Known differences from spaCy: unknown verbs in the present tense ("the cat naps") are read
as nouns, nouns used as modifiers ending in ``-y`` ("city skyline") as adjectives, and
proper nouns are never tagged PROPN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

DETERMINERS = frozenset(
    "a an the this that these those some each every another any no its his her their my your our "
    "both either neither several many few much".split()
)
NUMBERS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty hundred".split())
PREPOSITIONS = frozenset(
    "on in at of to from by with without into onto over under above below beneath beside besides "
    "between behind near next inside outside across along around through toward towards against "
    "among amid upon within after before during past like as for off out up down via atop "
    "underneath throughout".split()
)
CONJUNCTIONS = frozenset("and or but nor while whereas yet so because although though if".split())
PRONOUNS = frozenset("it they them he she him we us you i me which who whom whose that what there".split())
CHUNK_PRONOUNS = frozenset("it they them he she him we us you i me".split())
ADVERBS = frozenset(
    "very really quite too so also just only even still gently slowly quickly softly brightly "
    "gracefully lazily freshly seamlessly neatly together away here then now almost nearly "
    "partially fully completely".split()
)
VERBS = frozenset(
    "is are was were be been being am has have had do does did can could will would should may "
    "might must shall sits sit sat stands stand stood lies lie lay hangs hang hung holds hold "
    "held rests rest looks look flows flow floats float shines shine shone provides provide "
    "keeps keep kept serves serve makes make made covers cover plays play runs run ran eats eat "
    "ate drinks drink walks walk flies fly flew grows grow grew swims swim swam jumps jump leans "
    "lean perches perch rides ride rode carries carry wears wear wore reflects reflect contains "
    "contain displays display features reads read sleeps sleep slept gets get got goes go went "
    "comes come came takes take took gives give gave sees see saw says tell told tells fell "
    "falls fall spun spin drove drive sank sink woke wake lit cast spread rose rise rises "
    "sparkles glows glow gleams seems seem appears appear becomes become became feels feel felt "
    "fills fill filled sped stuck struck swept wove woven bent bends led hidden taken given shown driven "
    "ridden eaten written drawn worn".split()
)
ADJECTIVES = frozenset(
    # colours
    "red orange yellow green blue purple pink brown black white gray grey silver golden gold "
    "beige tan violet turquoise maroon navy cyan magenta teal crimson scarlet ivory multicolored "
    "colorful colourful dark light bright pale "
    # shapes
    "round square circular oval triangular rectangular spherical cylindrical cubic conical "
    "pyramidal pentagonal hexagonal octagonal oblong flat curved angular straight "
    # textures and materials used as adjectives
    "metallic wooden plastic soft hard smooth rough fluffy shiny glossy fuzzy bumpy spiky silky "
    "furry woolen leathery velvety crispy crunchy sleek sharp dull rusty dusty polished "
    "transparent translucent glass-like matte jagged prickly thorny icy rocky "
    # sizes and common descriptive words
    "big small large tiny huge giant little tall short long wide narrow thin thick heavy high "
    "low old new young ancient modern fresh ripe juicy sweet hot cold warm cool wet dry clean "
    "dirty empty full open closed broken cozy calm gentle delicate elegant intricate vibrant "
    "natural grand rich fragrant fiery bold crisp plush lush rugged sturdy striking stunning "
    "perfect tired cute happy sad beautiful pretty ugly strange simple plain fancy luxurious "
    "serene peaceful quiet loud busy vintage rustic".split()
)
ADJECTIVE_SUFFIXES = ("ful", "ous", "less", "ish")

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’\-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_CONTENT = ("NOUN", "ADJ", "NUM")


@dataclass(frozen=True)
class Token:
    """A word or punctuation mark with its character span in the prompt and a coarse tag."""

    text: str
    start: int
    end: int
    pos: str  # spaCy-style: NOUN PROPN ADJ DET NUM ADP CCONJ PRON VERB ADV PUNCT


@lru_cache(maxsize=1)
def spacy_pipeline() -> Optional[Any]:
    """spaCy's ``en_core_web_sm`` when both are installed, else ``None`` (rule-based stand-in)."""
    try:
        import spacy

        return spacy.load("en_core_web_sm")
    except (ImportError, OSError):
        return None


def tokens(text: str) -> list[Token]:
    """Tagged tokens of ``text`` (spaCy's when available)."""
    nlp = spacy_pipeline()
    if nlp is not None:
        return [Token(t.text, t.idx, t.idx + len(t.text), t.pos_) for t in nlp(text)]
    return _tag([(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)])


def noun_chunks(text: str) -> list[str]:
    """Noun phrases of ``text`` in order (spaCy's ``doc.noun_chunks`` when available)."""
    nlp = spacy_pipeline()
    if nlp is not None:
        return [chunk.text for chunk in nlp(text).noun_chunks]
    return [text[start:end] for start, end in _chunk_spans(tokens(text))]


def nouns(text: str) -> list[str]:
    """The tokens tagged NOUN, in order."""
    return [t.text for t in tokens(text) if t.pos == "NOUN"]


def drop_adjectives(text: str) -> str:
    """The official complex-CLIPScore text: all non-ADJ tokens joined by single spaces."""
    return " ".join(t.text for t in tokens(text) if t.pos != "ADJ")


def _closed_class(word: str) -> Optional[str]:
    lower = word.lower()
    if not any(c.isalnum() for c in word):
        return "PUNCT"
    if lower in DETERMINERS:
        return "DET"
    if lower in NUMBERS or lower.isdigit():
        return "NUM"
    if lower in PREPOSITIONS:
        return "ADP"
    if lower in CONJUNCTIONS:
        return "CCONJ"
    if lower in PRONOUNS:
        return "PRON"
    if lower in VERBS:
        return "VERB"
    if lower in ADVERBS or (lower.endswith("ly") and len(lower) > 5 and lower not in ADJECTIVES):
        return "ADV"
    if lower in ADJECTIVES or (lower.endswith(ADJECTIVE_SUFFIXES) and len(lower) > 5):
        return "ADJ"
    return None


def _tag(raw: list[tuple[str, int, int]]) -> list[Token]:
    """Closed-class look-up, then context rules for the open-class words (see module doc)."""
    tags = [_closed_class(word) for word, _, _ in raw]
    for i, (word, _, _) in enumerate(raw):
        if tags[i] is not None:
            continue
        lower = word.lower()
        prev = tags[i - 1] if i > 0 else None
        modifies = _continues_phrase(raw, tags, i)
        if lower.endswith(("ing", "ed")) and len(lower) > 4:
            if prev in ("DET", "NUM", "ADJ"):
                tags[i] = "ADJ" if modifies else "NOUN"  # "the flickering fire", "a painting"
            elif prev in (None, "ADP", "CCONJ", "PUNCT") and modifies:
                tags[i] = "ADJ"  # "with tiled floors"
            else:
                tags[i] = "VERB"  # "a man holding", "is looking", "and wagging"
        elif lower.endswith("y") and len(lower) > 3 and modifies and prev in ("DET", "NUM", "ADJ", "PUNCT", None):
            tags[i] = "ADJ"
        else:
            tags[i] = "NOUN"
    # a phrase-final adjective-list word after a determiner (+ adjectives) is a noun ("a blue orange")
    for i, tag in enumerate(tags):
        if tag == "ADJ" and not _continues_phrase(raw, tags, i):
            k = i - 1
            while k >= 0 and tags[k] == "ADJ":
                k -= 1
            if k >= 0 and tags[k] in ("DET", "NUM"):
                tags[i] = "NOUN"
    return [Token(word, start, end, pos) for (word, start, end), pos in zip(raw, tags)]


def _continues_phrase(raw: list[tuple[str, int, int]], tags: list[Optional[str]], i: int) -> bool:
    """Whether token ``i`` is followed by more of its noun phrase (a content word, or an
    adjective coordinated by "and"/"or"/",")."""
    nxt = tags[i + 1] if i + 1 < len(raw) else "END"
    if nxt in (None, "ADJ", "NOUN", "NUM"):
        return True
    joins = raw[i + 1][0].lower() in ("and", "or", ",") if i + 1 < len(raw) else False
    return joins and i + 2 < len(raw) and tags[i + 2] in (None, "ADJ")


def _chunk_spans(toks: list[Token]) -> list[tuple[int, int]]:
    """Character spans of the noun chunks over tagged tokens (see module doc)."""
    spans: list[tuple[int, int]] = []
    current: list[Token] = []

    def close() -> None:
        last_noun = max((k for k, t in enumerate(current) if t.pos == "NOUN"), default=None)
        if last_noun is not None:
            spans.append((current[0].start, current[last_noun].end))
        current.clear()

    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.pos == "DET":
            close()
            current.append(tok)
        elif tok.pos in _CONTENT:
            if current and current[-1].pos == "NOUN" and tok.pos != "NOUN":
                close()
            current.append(tok)
        elif tok.pos == "ADV" and nxt is not None and nxt.pos == "ADJ":
            current.append(tok)
        elif (
            (tok.pos == "CCONJ" and tok.text.lower() in ("and", "or") or tok.text == ",")
            and current and current[-1].pos == "ADJ" and nxt is not None and nxt.pos == "ADJ"
        ):
            current.append(tok)  # "black and white cat", "fiery, blazing sun"
        else:
            close()
            if tok.pos == "PRON" and tok.text.lower() in CHUNK_PRONOUNS:
                spans.append((tok.start, tok.end))
    close()
    return spans
