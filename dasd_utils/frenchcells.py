"""Table cells as the notebooks and the report show them in French: decimal comma, « — », oui / non.

Standard library only: the notebook helpers import it before the heavier phase packages.
"""

from __future__ import annotations

import math
from typing import Any


def french(value: Any, digits: int = 3) -> str:
    """Return a table cell as the notebooks show it: decimal comma, integers as such, « — » for a missing value, oui / non.

    A float keeps at most ``digits`` decimals (trailing zeros dropped); one too small for them
    (a learning rate) is written 2e-04. numpy scalars are read as their Python values.
    """
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.5 * 10 ** -digits:
            return f"{value:.0e}"
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return (text if text not in ("-0", "") else "0").replace(".", ",")
    return str(value)


__all__ = ["french"]
