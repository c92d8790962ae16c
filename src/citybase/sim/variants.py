"""How the same person, firm or address gets written differently by different departments.

Each function takes the canonical parts and a `mess` level (0 = clean master register, 1 = a
typical downstream copy) and returns the strings one department would hold. All vectorized over
numpy string arrays; rates are per record and independent.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from citybase.sim.rand import I64, Bool, pick
from citybase.sim.vocab import STR, Str, translate, vocab

_FULLWIDTH = {str(d): chr(ord("０") + d) for d in range(10)}


def join(*parts: Str | str) -> Str:
    out = np.asarray(parts[0], dtype=STR)
    for p in parts[1:]:
        out = np.strings.add(out, p)
    return out


def fullwidth_digits(a: Str, mask: Bool) -> Str:
    """Digits as full-width characters (１２３), as typed with a Chinese input method."""
    b = a
    for d, w in _FULLWIDTH.items():
        b = np.strings.replace(b, d, w)
    out: Str = np.where(mask, b, a)
    return out


def traditional(a: Str, mask: Bool) -> Str:
    """Traditional characters, as in records kept by a Hong Kong or Taiwan-facing office."""
    if not mask.any():
        return a
    out = a.copy()
    out[mask] = translate(a[mask], vocab().trad)
    return out


def person_names(sur: I64, g1: I64, g2: I64, rng: np.random.Generator, mess: float) -> Str:
    """Names from character indices (g2 = -1 for two-character names), with typos and variants.

    Typos swap one character for a same-sounding one (伟 -> 玮), mostly in the given name.
    """
    v = vocab()
    n = len(sur)
    s_tab, g_tab = v.surnames, v.given
    s_typo, g_typo = v.lookup(s_tab, v.typo), v.lookup(g_tab, v.typo)
    typo = rng.random(n) < 0.04 * mess
    where = pick(rng, n, [0.2, 0.5, 0.3])  # which character gets the typo
    where = np.where((where == 2) & (g2 < 0), 1, where)
    c0 = np.where(typo & (where == 0), s_typo[sur], s_tab[sur])
    c1 = np.where(typo & (where == 1), g_typo[g1], g_tab[g1])
    g2c = g_tab[np.maximum(g2, 0)]
    c2 = np.where(g2 < 0, "", np.where(typo & (where == 2), g_typo[np.maximum(g2, 0)], g2c)).astype(STR)
    spaced = rng.random(n) < 0.015 * mess
    name = np.strings.add(np.strings.add(np.where(spaced, np.strings.add(c0, " "), c0), c1), c2)
    return traditional(name, rng.random(n) < 0.02 * mess)


def phones(phone: Str, rng: np.random.Generator, mess: float) -> Str:
    """The same mobile number as 13812345678, +86 138 1234 5678, 138-1234-5678 and the like."""
    n = len(phone)
    style = np.where(rng.random(n) < 0.6 * mess, pick(rng, n, [0.3, 0.2, 0.2, 0.2, 0.1]) + 1, 0)
    a, b, c = np.strings.slice(phone, 0, 3), np.strings.slice(phone, 3, 7), np.strings.slice(phone, 7, 11)

    forms = [
        phone,
        join("+86 ", a, " ", b, " ", c),
        join("+86", phone),
        join(a, "-", b, "-", c),
        join(a, " ", b, " ", c),
        join("86-", phone),
    ]
    out: Str = np.choose(style, [np.asarray(f, dtype=object) for f in forms]).astype(STR)
    return out


def addresses(
    *,
    district: Str,
    district_short: Str,
    street: Str,
    road: Str,
    number: I64,
    building_name: Str,
    tails: list[Str],
    tail_p: list[float],
    rng: np.random.Generator,
    mess: float,
) -> Str:
    """An address as one department writes it.

    Canonical: 北京市 + district + road + number + 号 + tails[0]. Variants: no city or 北京 for
    北京市, abbreviated district (朝阳 for 朝阳区), the street office inserted, 号楼 or 号院 for 号,
    the building's name instead of road and number, another tail form, full-width digits.
    """
    n = len(road)
    r = rng.random((8, n))
    city = np.where(r[0] < 0.3 * mess, np.where(r[7] < 0.8, "", "北京"), "北京市").astype(STR)
    dist = np.where(r[1] < 0.15 * mess, district_short, district)
    dist = np.where(r[2] < 0.04 * mess, "", dist).astype(STR)
    street_part = np.where(r[3] < 0.12 * mess, street, "").astype(STR)
    hao = np.where(r[4] < 0.3 * mess, np.where(r[4] < 0.2 * mess, "号楼", "号院"), "号").astype(STR)
    place = join(road, number.astype(STR), hao)
    place = np.where(r[5] < 0.08 * mess, building_name, place)
    tail_choice = np.where(rng.random(n) < mess, pick(rng, n, tail_p), 0)
    tail = np.choose(tail_choice, [np.asarray(t, dtype=object) for t in tails]).astype(STR)
    out = join(city, dist, street_part, place, tail)
    out = fullwidth_digits(out, r[6] < 0.08 * mess)
    return traditional(out, rng.random(n) < 0.015 * mess)


def enterprise_names(word: Str, industry: Str, form: Str, rng: np.random.Generator, mess: float) -> Str:
    """A company name as written by a department.

    Canonical: 北京 + trade name + industry + legal form (北京宏远科技有限公司). Variants: no 北京, the
    place in brackets after the trade name (宏远(北京)科技有限公司, with full- or half-width
    brackets), a short name without the legal form, 有限责任公司 for 有限公司, a typo, traditional.
    """
    n = len(word)
    v = vocab()
    r = rng.random((6, n))
    # typo in the trade name's second character, where that character has a look-alike
    first, second = np.strings.slice(word, 0, 1), np.strings.slice(word, 1, 2)
    typo_second = translate(second, v.typo)
    word = np.where(r[0] < 0.04 * mess, np.strings.add(first, typo_second), word).astype(STR)
    form = np.where((r[1] < 0.08 * mess) & (form == "有限公司"), "有限责任公司", form).astype(STR)
    style = np.where(r[2] < 0.45 * mess, pick(rng, n, [0.35, 0.25, 0.2, 0.2]) + 1, 0)
    forms: list[NDArray[np.object_]] = [
        join("北京", word, industry, form).astype(object),
        join(word, industry, form).astype(object),
        join(word, "(北京)", industry, form).astype(object),
        join(word, "（北京）", industry, form).astype(object),
        join("北京", word, industry).astype(object),
    ]
    out: Str = np.choose(style, forms).astype(STR)
    return traditional(out, r[3] < 0.02 * mess)
