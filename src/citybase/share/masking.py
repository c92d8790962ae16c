"""Masks for personal fields: one rule per personal-data class, in three equal forms.

- Python (`PYTHON_MASKS`): the reference, one value at a time; the other two are tested against it.
- Arrow (`mask_arrow`): vectorised, applied once when a row is written, into the field's shadow
  column (`<field>__masked`, model/layout.py; gateway/conform.py computes it). A masked read is then
  a plain column read (docs/adr/0005).
- SQL (`mask_sql`): goes into a `ReadScope`, applied inside the query engine where no shadow column
  holds the masked value (a table made before shadow columns, a non-text field).

Either way a consumer never receives the raw value. The rules follow common practice for Chinese
personal data (GB/T 35273 examples): keep enough to recognise a record one already knows, never
enough to find a person one does not.

| class | rule | example |
|---|---|---|
| id_number | first 3 and last 4 kept | 110***********1234 |
| phone | first 3 and last 4 kept | 138****5678 |
| name | first character kept | 张* |
| address | first 6 characters kept, then a fixed `****` (length hidden) | 北京市朝阳区**** |
| email | first character and the domain | z***@example.cn |
| other | replaced by `***` | *** |
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from citybase.model.dataset import FieldType, Personal
from citybase.model.layout import SQL_TYPES
from citybase.query._sql import quote


def mask_keep_ends(value: str | None, head: int = 3, tail: int = 4) -> str | None:
    """Keep `head` and `tail` characters, star the middle; short values are starred whole.

    >>> mask_keep_ends("110101199003071234"), mask_keep_ends("13812345678"), mask_keep_ends("1234")
    ('110***********1234', '138****5678', '****')
    """
    if value is None:
        return None
    n = len(value)
    if n <= head + tail:
        return "*" * n
    return value[:head] + "*" * (n - head - tail) + value[n - tail :]


def mask_name(value: str | None) -> str | None:
    """Keep the first character (the family name of a Chinese name).

    >>> mask_name("张三"), mask_name("欧阳娜娜"), mask_name("李")
    ('张*', '欧***', '*')
    """
    if value is None:
        return None
    return "*" if len(value) <= 1 else value[0] + "*" * (len(value) - 1)


def mask_address(value: str | None) -> str | None:
    """Keep the first six characters (city and district); the rest, length included, is hidden.

    >>> mask_address("北京市朝阳区望京街道8号楼3单元")
    '北京市朝阳区****'
    """
    if value is None:
        return None
    return "****" if len(value) <= 6 else value[:6] + "****"


def mask_email(value: str | None) -> str | None:
    """Keep the first character and the domain.

    >>> mask_email("zhang.san@example.cn")
    'z***@example.cn'
    """
    if value is None:
        return None
    at = value.find("@")
    return "***" if at < 1 else value[0] + "***" + value[at:]


def mask_other(value: str | None) -> str | None:
    """Hide the value entirely.

    >>> mask_other("anything")
    '***'
    """
    return None if value is None else "***"


#: The Python form of each class's mask (the reference the SQL is tested against).
PYTHON_MASKS: dict[Personal, Callable[[str | None], str | None]] = {
    Personal.id_number: mask_keep_ends,
    Personal.phone: mask_keep_ends,
    Personal.name: mask_name,
    Personal.address: mask_address,
    Personal.email: mask_email,
    Personal.other: mask_other,
}


# substring() rather than left()/right(): the same code points, about a third cheaper in DuckDB,
# and masks run on every row a consumer reads (benchmarks/share_bench.py).
def _keep_ends_sql(c: str, head: int = 3, tail: int = 4) -> str:
    return (
        f"CASE WHEN length({c}) <= {head + tail} THEN repeat('*', length({c})) "
        f"ELSE substring({c}, 1, {head}) || repeat('*', length({c}) - {head + tail}) "
        f"|| substring({c}, length({c}) - {tail - 1}, {tail}) END"
    )


def mask_sql(column: str, personal: Personal, type: FieldType = FieldType.string) -> str:
    """The SQL expression that replaces `column` for a reader who may not see it raw.

    Non-text personal fields (a birth date tagged personal...) become NULL of their type.

    >>> mask_sql("who", Personal.other)
    'CASE WHEN "who" IS NULL THEN NULL ELSE \\'***\\' END'
    """
    c = quote(column)
    if type not in (FieldType.string, FieldType.json):
        return f"CAST(NULL AS {SQL_TYPES[type]})"
    if personal in (Personal.id_number, Personal.phone):
        return _keep_ends_sql(c)
    if personal is Personal.name:
        return (
            f"CASE WHEN length({c}) <= 1 THEN '*' "
            f"ELSE substring({c}, 1, 1) || repeat('*', length({c}) - 1) END"
        )
    if personal is Personal.address:
        return f"CASE WHEN length({c}) <= 6 THEN '****' ELSE substring({c}, 1, 6) || '****' END"
    if personal is Personal.email:
        return (
            f"CASE WHEN strpos({c}, '@') < 2 THEN '***' "
            f"ELSE substring({c}, 1, 1) || '***' || substring({c}, strpos({c}, '@')) END"
        )
    return f"CASE WHEN {c} IS NULL THEN NULL ELSE '***' END"


# -- Arrow ------------------------------------------------------------------------------------------


def _stars(count: pa.Array) -> pa.Array:
    return pc.binary_repeat("*", pc.max_element_wise(count, 0))


def _concat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def mask_arrow(values: pa.Array | pa.ChunkedArray, personal: Personal) -> pa.Array:
    """The mask of a text column, vectorised: value by value what the Python form gives.

    About 0.1 µs a value; computed once per row when it is written, never per read.

    >>> mask_arrow(pa.array(["张三", None, "李"]), Personal.name).to_pylist()
    ['张*', None, '*']
    >>> mask_arrow(pa.array(["zhang.san@example.cn", "@x"]), Personal.email).to_pylist()
    ['z***@example.cn', '***']
    """
    v = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    v = v.cast(pa.string())
    n = pc.utf8_length(v)  # in code points, as Python's len and DuckDB's length

    def head(k: int) -> pa.Array:
        return pc.utf8_slice_codeunits(v, 0, k)  # code points too, despite the name

    if personal in (Personal.id_number, Personal.phone):
        kept = _concat(head(3), _stars(pc.subtract(n, 7)), pc.utf8_slice_codeunits(v, -4))
        out = pc.if_else(pc.less_equal(n, 7), _stars(n), kept)
    elif personal is Personal.name:
        out = pc.if_else(pc.less_equal(n, 1), "*", _concat(head(1), _stars(pc.subtract(n, 1))))
    elif personal is Personal.address:
        out = pc.if_else(pc.less_equal(n, 6), "****", _concat(head(6), "****"))
    elif personal is Personal.email:
        # The domain: everything from the first "@" on (the text before it removed).
        domain = pc.replace_substring_regex(v, pattern="^[^@]*", replacement="", max_replacements=1)
        kept = _concat(head(1), "***", domain)
        out = pc.if_else(pc.greater_equal(pc.find_substring(v, "@"), 1), kept, "***")
    else:
        out = pc.if_else(pc.is_null(v), pa.scalar(None, pa.string()), "***")
    return out.cast(pa.string())
