"""The notebooks are built from notebooks/src/: the committed ones must equal what their sources build."""

from __future__ import annotations

import nbformat
import pytest

from support.scripts import build_notebooks


def test_committed_notebooks_equal_their_sources():
    assert build_notebooks().check() == []


def test_every_notebook_says_it_is_generated_and_from_which_source():
    builder = build_notebooks()
    for name, source in builder.sources().items():
        first = builder.build_notebook(name, source).cells[0]
        assert first.cell_type == "markdown" and "Notebook généré depuis" in first.source
        assert f"notebooks/src/{source.name}" in first.source


def test_an_edit_made_in_the_notebook_is_reported(tmp_path):
    builder = build_notebooks()
    name, source = next(iter(builder.sources().items()))
    built = builder.build_notebook(name, source)
    edited = builder.build_notebook(name, source)
    code = next(c for c in edited.cells if c.cell_type == "code" and "run_phase" in c.source)
    code.source += "\nprint('édité dans Jupyter')"
    problems = builder.differences(built, edited)
    assert len(problems) == 1 and "text" in problems[0]


def test_cell_ids_are_stable_and_local_to_the_edited_cell(tmp_path):
    builder = build_notebooks()
    name, source = next(iter(builder.sources().items()))
    first = [c.id for c in builder.build_notebook(name, source).cells]
    assert first == [c.id for c in builder.build_notebook(name, source).cells]  # rebuilding changes nothing
    assert len(set(first)) == len(first)
    edited = tmp_path / source.name
    text = source.read_text(encoding="utf-8")
    marker = "\n# %%\n"
    position = text.rindex(marker) + len(marker)
    edited.write_text(text[:position] + "x = 1  # une ligne ajoutée\n" + text[position:], encoding="utf-8")
    second = [c.id for c in builder.build_notebook(name, edited).cells]
    assert len(second) == len(first) and sum(a != b for a, b in zip(first, second)) == 1


@pytest.mark.parametrize("text, message", [
    ("print(1)\n# %%\nx = 1\n", "code before the first"),
    ("# %% [markdown]\nnot a comment\n", "must start with '# '"),
    ("# %% tags=[parameters]\nx = 1\n", "is not JSON"),
])
def test_a_malformed_source_is_refused_with_its_line(text, message):
    with pytest.raises(build_notebooks().SourceError, match=message):
        build_notebooks().parse_source(text, "bad.py")


def test_parsing_reads_markdown_code_and_tags():
    cells = build_notebooks().parse_source(
        '# header comment\n\n# %% [markdown]\n# # Titre\n#\n# texte\n\n# %% tags=["parameters"]\nA = 1\n\n\n# %%\nprint(A)\n')
    assert [(c.cell_type, c.source, c.metadata) for c in cells] == [
        ("markdown", "# Titre\n\ntexte", {}), ("code", "A = 1", {"tags": ["parameters"]}), ("code", "print(A)", {})]
