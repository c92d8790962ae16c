"""Chinese identifiers with their real check characters, vectorized.

- Resident identity card numbers, GB 11643-1999: 6-digit region + birth date + 3-digit sequence
  (odd for men) + a mod 11-2 check character.
- Unified social credit codes, GB 32100-2015: registration authority + entity type + 6-digit region
  + the 9-character organisation code (with its own GB 11714 check) + a mod 31 check character.
- Mobile phone numbers with real carrier prefixes.

Checks are real so that fusion and validation code can trust (or test) them, as they would in
production; the validators here are what the tests use.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from citybase.sim.rand import I64, Bool
from citybase.sim.vocab import STR, Str

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.array(list("10X98765432"))
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64)
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_MOBILE = np.array(
    [130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159,
     166, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187, 188, 189, 191, 198, 199],
    dtype=np.int64,
)  # fmt: skip


def _digits(values: I64, width: int) -> I64:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    out: I64 = (values[:, None] // powers) % 10
    return out


def _join(chars: NDArray[np.str_]) -> Str:
    """Rows of single characters (n, k) -> n strings of length k."""
    k = chars.shape[1]
    flat = np.ascontiguousarray(chars.astype("<U1")).view(f"<U{k}").ravel()
    return flat.astype(STR)


def id_numbers(region: I64, birth: NDArray[np.datetime64], seq: I64, male: Bool) -> Str:
    """18-character identity numbers; `seq` 0..499 is made odd for men and even for women."""
    ymd = birth.astype("datetime64[D]")
    y = ymd.astype("datetime64[Y]").astype(np.int64) + 1970
    m = ymd.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (ymd - ymd.astype("datetime64[M]")).astype(np.int64) + 1
    s = (seq % 500) * 2 + np.where(male, 1, 0)
    body = region * 10**11 + (y * 10_000 + m * 100 + d) * 1000 + s
    check = _ID_CHECK[(_digits(body, 17) * _ID_WEIGHTS).sum(axis=1) % 11]
    return np.strings.add(body.astype(STR), check.astype(STR))


def id_number_valid(ids: Str) -> Bool:
    """True where an identity number has 18 characters and a correct check character."""
    a = np.asarray(ids).astype("<U18")
    ok = np.strings.str_len(a) == 18
    head = np.strings.slice(a, 0, 17)
    ok &= np.strings.isdigit(head)
    body = np.where(ok, head, "0" * 17).astype(np.int64)
    want = _ID_CHECK[(_digits(body, 17) * _ID_WEIGHTS).sum(axis=1) % 11]
    out: Bool = ok & (np.strings.upper(np.strings.slice(a, 17, 18)) == want)
    return out


def credit_codes(region: I64, rng: np.random.Generator) -> Str:
    """18-character unified social credit codes for companies ('9' market regulator, '1' company)."""
    n = len(region)
    org = rng.integers(0, 10, (n, 8))
    org_check = 11 - (org * _ORG_WEIGHTS).sum(axis=1) % 11
    # GB 11714: 10 is written X, 11 is written 0; in the 31-character alphabet X has the value 30.
    org_check_v = np.where(org_check == 11, 0, np.where(org_check == 10, USCC_CHARS.index("X"), org_check))
    v = np.column_stack([np.full(n, 9), np.full(n, 1), _digits(region, 6), org, org_check_v])
    check = (31 - (v * _USCC_WEIGHTS).sum(axis=1) % 31) % 31
    alphabet = np.array(list(USCC_CHARS))
    return _join(alphabet[np.column_stack([v, check])])


def credit_code_valid(codes: Str) -> Bool:
    """True where a unified social credit code has 18 allowed characters and the right check."""
    a = np.asarray(codes).astype("<U18")
    n = len(a)
    ok = np.strings.str_len(a) == 18
    chars = np.where(ok, a, "0" * 18).astype("<U18").view("<U1").reshape(n, 18)
    lut = np.full(128, -1, dtype=np.int64)
    lut[[ord(c) for c in USCC_CHARS]] = np.arange(31)
    codes_i = chars.view(np.int32).reshape(n, 18).astype(np.int64)
    v = np.where(codes_i < 128, lut[np.minimum(codes_i, 127)], -1)
    ok &= (v >= 0).all(axis=1)
    want = (31 - (np.maximum(v[:, :17], 0) * _USCC_WEIGHTS).sum(axis=1) % 31) % 31
    out: Bool = ok & (v[:, 17] == want)
    return out


def mobile_numbers(rng: np.random.Generator, n: int) -> Str:
    """11-digit mainland mobile numbers; a few duplicates are possible, as in life."""
    prefix = _MOBILE[rng.integers(0, len(_MOBILE), n)]
    out: Str = (prefix * 10**8 + rng.integers(0, 10**8, n)).astype(STR)
    return out
