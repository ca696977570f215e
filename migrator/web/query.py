"""Numbers from a query string: a page cursor, a pass number, a customer's id."""

from __future__ import annotations

# the largest value a database id or counter column holds (a signed 64-bit integer):
# SQLite raises OverflowError for a bigger Python int, which was a 500 for a typed URL
ID_MAX = 2**63 - 1


def query_int(text: str | None) -> int | None:
    """`text` as a whole number when it is digits within a database column's range, else
    None: a bigger number names no row, so it is treated as absent."""
    if not text or not text.isdigit():
        return None
    number = int(text)
    return number if number <= ID_MAX else None
