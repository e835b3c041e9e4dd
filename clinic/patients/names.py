"""Search keys for names in any script.

A name is transliterated to Latin letters with ``anyascii`` (ISC licence, actively kept,
one table per Unicode block rather than a hand-written list), lower-cased and stripped to
``a-z0-9``. The same name typed with or without its diacritics, or in its common Latin
transliteration, gets the same key: "Núñez" and "nunez" -> ``nunez``; "Иван" and "Ivan"
-> ``ivan``; "Ανδρέας" and "andreas" -> ``andreas``.

Keys are compared by byte (collation "C" on PostgreSQL), so a prefix is a range
(``key >= 'smi' AND key < 'smj'``) that a plain b-tree index serves on both engines.
"""

from __future__ import annotations

import re
import threading
import unicodedata

import icu
from anyascii import anyascii

KEY_LENGTH = 80  # the key columns' length; a transliteration can be longer than the name
_NOT_KEY = re.compile(r"[^a-z0-9]+")


def _latin(text: str) -> str:
    return anyascii(unicodedata.normalize("NFC", text)).lower()


# The romanisations a person is likely to type for a name written in another script:
# BGN/PCGN for Cyrillic ("Юрий" -> "Yuriy"), UNGEGN (ELOT 743) for Greek ("Ευάγγελος" ->
# "Evangelos", where anyascii writes letter by letter "Eyaggelos"), then ICU's general
# Any-Latin for every other script, all folded to ASCII. ICU (the Unicode Consortium's
# library, through PyICU) carries these as CLDR transform rules: no table of ours.
_ROMANISATION = "Russian-Latin/BGN; Greek-Latin/UNGEGN; Any-Latin; Latin-ASCII; Lower"
_icu = threading.local()  # a transliterator per thread: ICU's are not shared safely


def _romanised(text: str) -> str:
    transliterator = getattr(_icu, "romanisation", None)
    if transliterator is None:
        transliterator = _icu.romanisation = icu.Transliterator.createInstance(_ROMANISATION)
    return transliterator.transliterate(unicodedata.normalize("NFC", text))


def latin_spellings(name: str | None) -> set[str]:
    """Every Latin spelling this module knows for ``name``, lower-case ASCII (words and
    punctuation kept): anyascii's letter-by-letter one and ICU's romanisation
    ("Παπαδόπουλος" -> {"papadopoylos", "papadopoulos"})."""
    if not name:
        return set()
    return {_latin(name), _romanised(name)}


def name_keys(name: str | None) -> set[str]:
    """The search keys of every Latin spelling of ``name`` (see ``search_key``): two names
    are the same name when their keys meet."""
    return {k for k in (_NOT_KEY.sub("", s)[:KEY_LENGTH] for s in latin_spellings(name)) if k}


def search_key(name: str | None) -> str:
    """Lower-case ASCII letters and digits of ``name`` in Latin script, at most
    KEY_LENGTH long: "O'Brien-Núñez" -> "obriennunez", "Петров" -> "petrov"."""
    if not name:
        return ""
    return _NOT_KEY.sub("", _latin(name))[:KEY_LENGTH]


def name_tokens(*names: str | None) -> set[str]:
    """The words a search may start with for these names: each word of each Latin
    spelling of each name (``latin_spellings``), and the whole name when it has several
    words, so "Mary-Jane Watson-Parker" is found by "mary", "jane", "maryjane", "watson",
    "parker" or "watsonparker", "王小明" by "wang", "xiao" or "ming", and "Ευάγγελος" by
    "evangelos" or anyascii's "eyaggelos"."""
    tokens: set[str] = set()
    for name in names:
        for spelling in latin_spellings(name):
            words = [w[:KEY_LENGTH] for w in _NOT_KEY.split(spelling) if w]
            tokens.update(words)
            if len(words) > 1:
                tokens.add(_NOT_KEY.sub("", spelling)[:KEY_LENGTH])
    tokens.discard("")
    return tokens


def has_letter(name: str | None) -> bool:
    """True when ``name`` holds a letter of any script (not only digits or punctuation)."""
    return bool(name) and any(ch.isalpha() for ch in name)


def normalise(name: str | None) -> str | None:
    """Names are stored in Unicode NFC, so one name typed two ways is stored one way."""
    return unicodedata.normalize("NFC", name) if name else name
