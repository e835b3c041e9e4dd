"""Patient names in several scripts, and their search keys and tokens computed by the
app's own functions (``clinic.patients.names``), so patient search finds them."""

from __future__ import annotations

import random
from functools import cache

from clinic.patients.names import name_tokens, search_key

# (weight, first names, last names): one culture per patient, so a name reads as a name.
CULTURES = (
    (
        0.62,
        ("John", "Mary", "Keisha", "Mary-Jane", "Jean-Luc", "Zoë", "Siobhán", "DeShawn", "Emily",
         "Tyrone", "Amber", "Cody", "Brittany", "Marcus", "Dana", "Jamal", "Kayla", "Travis"),
        ("Smith", "Watson-Parker", "O'Brien", "Nguyen", "Kim", "Brown", "Johnson", "D'Angelo",
         "Williams", "Baker", "Miller", "Davis", "Clark-Lewis", "Walker", "Young", "Allen"),
    ),
    (
        0.14,
        ("José", "María", "Ana", "Sofía", "Andrés", "Lucía", "Ángel", "Inés", "Raúl"),
        ("Núñez", "García", "Pérez-López", "Muñoz", "Hernández", "Rodríguez", "Ibáñez"),
    ),
    (
        0.07,
        ("Иван", "Ольга", "Юрий", "Наталья", "Дмитрий", "Светлана"),
        ("Петров", "Смирнова", "Кузнецов", "Иванова", "Соколов", "Попова"),
    ),
    (
        0.05,
        ("Ελένη", "Ανδρέας", "Γιώργος", "Ευάγγελος", "Μαρία"),
        ("Παπαδόπουλος", "Ιωάννου", "Γεωργίου", "Νικολάου"),
    ),
    (
        0.07,
        ("小明", "美玲", "伟", "芳", "浩然"),
        ("王", "李", "张", "刘", "陈"),
    ),
    (
        0.05,
        ("محمد", "فاطمة", "أحمد", "ليلى", "يوسف"),
        ("حداد", "خوري", "منصور", "العلي"),
    ),
)  # fmt: skip
_WEIGHTS = [c[0] for c in CULTURES]
PREFERRED = ("Jo", "Bee", "Andy", "Sasha", "Lena")


def pick_name(rng: random.Random) -> tuple[str, str, str | None]:
    """(first, last, preferred or None)."""
    _, firsts, lasts = rng.choices(CULTURES, weights=_WEIGHTS)[0]
    preferred = rng.choice(PREFERRED) if rng.random() < 0.04 else None
    return rng.choice(firsts), rng.choice(lasts), preferred


@cache
def key(name: str) -> str:
    return search_key(name)


@cache
def tokens(name: str) -> frozenset[str]:
    return frozenset(name_tokens(name))


def all_tokens(*names: str | None) -> set[str]:
    """``name_tokens(*names)`` (the union of each name's), computed once per name."""
    out: set[str] = set()
    for name in names:
        if name:
            out |= tokens(name)
    return out
