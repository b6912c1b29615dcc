"""Formatters of the report: numbers in French typography (decimal comma, a space before "%"),
and Markdown escaping of text that comes from the run (model names, questions, responses).

They are the Jinja2 filters of ``rapport.md.j2`` (see ``build._environment``).
"""

from __future__ import annotations

import math
import re
from typing import Any


def number(value: Any) -> float | None:
    """Return ``value`` as a float when it is a finite number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt_num(value: Any, digits: int = 2) -> str:
    value = number(value)
    if value is None:
        return "—"
    return f"{value:.{digits}f}".replace(".", ",")


def fmt_g(value: Any) -> str:
    """Return a setting as written (0.3, 3, 0.25), with a decimal comma."""
    value = number(value)
    return "—" if value is None else f"{value:g}".replace(".", ",")


def fmt_int(value: Any) -> str:
    value = number(value)
    return "—" if value is None else str(int(round(value)))


def fmt_pct(value: Any, digits: int = 1) -> str:
    value = number(value)
    return "—" if value is None else f"{fmt_num(value * 100, digits)} %"


def fmt_ci(ci: Any, digits: int = 1) -> str:
    if not ci:
        return "—"
    return f"[{fmt_pct(ci[0], digits)} ; {fmt_pct(ci[1], digits)}]"


def fmt_p(value: Any) -> str:
    value = number(value)
    if value is None:
        return "p non disponible"
    if value < 0.001:
        return "p < 0,001"
    return f"p = {fmt_num(value, 3)}"


def fmt_sci(value: Any) -> str:
    """Return a learning rate or other small number in the usual 2e-04 notation."""
    value = number(value)
    return "—" if value is None else f"{value:.0e}"


def fmt_duration(value: Any) -> str:
    value = number(value)
    if value is None:
        return "—"
    if value < 120:
        return f"{fmt_num(value, 1)} s"
    return f"{fmt_num(value / 60, 1)} min"


def plural(value: Any, singular: str, plural_form: str | None = None) -> str:
    """Return ``singular`` or its plural for a count: plural from 2 on, as in French (« 1 époque », « 1,5 époque », « 3 époques »)."""
    value = number(value)
    many = value is not None and abs(value) >= 2
    return (plural_form or singular + "s") if many else singular


def fmt_count(value: Any, singular: str, plural_form: str | None = None) -> str:
    """Return a count with its noun, agreed in number: ``1 époque``, ``3 époques``, ``1,5 époque``."""
    shown = fmt_int(value) if number(value) is not None and float(value).is_integer() else fmt_g(value)
    return f"{shown} {plural(value, singular, plural_form)}"


def md_escape(text: Any) -> str:
    """Return ``text`` with Markdown / HTML special characters escaped, on one line."""
    if text is None:
        return "—"
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_{}\[\]<>#|!])", r"\\\1", text)


def md_code(text: Any) -> str:
    """Return ``text`` as an inline code span on one line; text holding a backtick or ``|`` is escaped instead.

    A backtick would close the span early and let the rest be read as Markdown; a ``|`` would
    split a table cell. Such text (never a real profile, split or path) is shown escaped, not in code.
    """
    if text is None:
        return "—"
    text = " ".join(str(text).split())
    if not text or "`" in text or "|" in text:
        return md_escape(text) if text else "—"
    return f"`{text}`"


def md_alt(text: Any) -> str:
    """Return ``text`` escaped for the alt text of a Markdown image (brackets, backticks, ``<``, ``\\``), on one line."""
    return re.sub(r"([\\`\[\]<>])", r"\\\1", " ".join(str(text or "").split()))


def fence(text: Any) -> str:
    """Return ``text`` in a fenced code block whose fence is longer than any backtick run inside."""
    text = "" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


def display_model(name: Any) -> str | None:
    """Return a readable model name: ``pypi:pkg/Name`` -> ``Name (paquet PyPI pkg)``."""
    if not name:
        return None
    name = str(name)
    if name.startswith("pypi:"):
        package, _, model = name[len("pypi:") :].partition("/")
        return f"{model or package} (paquet PyPI {package})"
    return name


#: The Jinja2 filters of the template.
FILTERS = {
    "num": fmt_num, "g": fmt_g, "int": fmt_int, "pct": fmt_pct, "ci": fmt_ci, "pval": fmt_p, "sci": fmt_sci,
    "duration": fmt_duration, "count": fmt_count, "plural": plural, "md": md_escape, "code": md_code, "alt": md_alt, "fence": fence,
}
