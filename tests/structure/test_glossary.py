"""One French: docs/glossaire.md and notebook 01 give the same glossary, and the notebooks and the
report's template do not use the words it sets aside."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def glossary_rows() -> list[str]:
    text = (REPO / "docs" / "glossaire.md").read_text(encoding="utf-8")
    table = text.split("<!-- glossaire -->", 1)[1].split("<!-- /glossaire -->", 1)[0]
    return [line for line in table.strip().splitlines() if line.startswith("|")]


def test_notebook_01_shows_the_glossary_of_the_docs():
    source = (REPO / "notebooks" / "src" / "01_donnees.py").read_text(encoding="utf-8")
    rows = glossary_rows()
    assert len(rows) > 15
    for row in rows:
        assert f"# {row}\n" in source, row


# Words the glossary sets aside, as they would appear in running French text (the glossary's own
# "à ne pas écrire" column and English identifiers in code spans are not running text).
SET_ASIDE = (r"\bpapier\b", r"\bjetons?\b", r"\bnon évaluables?\b", r"\bconservée?s?\b(?! :)", r"\bretenue?s?\b",
             r"\bétapes? [12]\b", r"\bÉtapes? [12]\b")


def test_notebooks_and_templates_use_the_glossary_terms():
    texts = {p: p.read_text(encoding="utf-8") for p in [*(REPO / "notebooks" / "src").glob("[0-9]*.py"),
                                                         *(REPO / "dasd_utils" / "templates").glob("*.j2")]}
    found = []
    for path, text in texts.items():
        if path.name == "01_donnees.py":
            text = re.sub(r"^# \|.*$", "", text, flags=re.MULTILINE)  # the glossary table itself
        text = re.sub(r"`[^`]*`", "", text)
        for pattern in SET_ASIDE:
            found += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert found == [], found
