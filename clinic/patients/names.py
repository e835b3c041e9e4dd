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
import unicodedata

from anyascii import anyascii

KEY_LENGTH = 80  # the key columns' length; a transliteration can be longer than the name
_NOT_KEY = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits, in any script
_SYLLABLE = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+")
_GREEK_OU = re.compile("[\u03bf\u039f][\u03c5\u03a5\u03cd\u038e]")  # omicron, upsilon


def _latin(text: str) -> str:
    return anyascii(unicodedata.normalize("NFC", text)).lower()


def search_key(name: str | None) -> str:
    """Lower-case ASCII letters and digits of ``name`` in Latin script, at most
    KEY_LENGTH long: "O'Brien-Núñez" -> "obriennunez", "Петров" -> "petrov"."""
    if not name:
        return ""
    return _NOT_KEY.sub("", _latin(name))[:KEY_LENGTH]


def name_tokens(*names: str | None) -> set[str]:
    """The words a search may start with for these names: each word of each name, and
    the whole name when it has several words, so "Mary-Jane Watson-Parker" is found by
    "mary", "jane", "maryjane", "watson", "parker" or "watsonparker".

    Two further spellings come from the transliteration itself, not from a table: the
    syllables anyascii capitalises inside one word ("王小明" -> "WangXiaoMing": "wang",
    "xiao", "ming"; "McDonald": "mc", "donald"), and for Greek the digraph omicron-upsilon
    written "ou" as in ELOT 743 / ISO 843 ("Παπαδόπουλος": "papadopoulos" beside anyascii's
    letter-by-letter "papadopoylos")."""
    tokens: set[str] = set()
    for name in names:
        if not name:
            continue
        words = [w[:KEY_LENGTH] for w in _NOT_KEY.split(_latin(name)) if w]
        tokens.update(words)
        if len(words) > 1:
            tokens.add(search_key(name))
        for word in _WORD.findall(unicodedata.normalize("NFC", name)):
            latin = anyascii(word)
            syllables = (
                _SYLLABLE.findall(latin) if latin not in (latin.upper(), latin.lower()) else []
            )
            if len(syllables) > 1:
                tokens.update(s.lower()[:KEY_LENGTH] for s in syllables)
            if _GREEK_OU.search(word):
                tokens.add(search_key(_GREEK_OU.sub("ou", word)))
    tokens.discard("")
    return tokens


def has_letter(name: str | None) -> bool:
    """True when ``name`` holds a letter of any script (not only digits or punctuation)."""
    return bool(name) and any(ch.isalpha() for ch in name)


def normalise(name: str | None) -> str | None:
    """Names are stored in Unicode NFC, so one name typed two ways is stored one way."""
    return unicodedata.normalize("NFC", name) if name else name
