"""Progress bars in Jupyter without ipywidgets: text bars, no ``TqdmWarning: IProgress not found`` in the outputs."""

from __future__ import annotations

import importlib.util

import pytest

BAR = "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='bar'):\n    pass\n"


def _stderr_of(tmp_path, cells: list[str]) -> str:
    """Return the stderr text of a notebook made of ``cells`` executed by papermill in a real kernel."""
    import nbformat
    import papermill as pm
    from nbformat.v4 import new_code_cell, new_notebook

    source, target = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    pm.execute_notebook(str(source), str(target), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    executed = nbformat.read(target, as_version=4)
    return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")


@pytest.mark.notebook
@pytest.mark.skipif(importlib.util.find_spec("ipywidgets") is not None, reason="ipywidgets installed: widget bars")
def test_notebook_setup_gives_text_bars_without_the_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # conftest disables bars; the kernel inherits the environment
    # Without the set-up, tqdm warns (the check can fail)...
    assert "IProgress not found" in _stderr_of(tmp_path, [BAR])
    # ...with the notebooks' set-up path it does not, and the bar is still drawn as text.
    stderr = _stderr_of(tmp_path, [
        f"from dasd_utils import notebook as nb\ncfg = nb.load_notebook_config('demo', {str(tmp_path / 'run')!r})\n", BAR])
    assert "IProgress not found" not in stderr and "bar: 100%" in stderr


def test_quiet_text_progress_bars_reports_the_bar_kind():
    from dasd_utils.notebook import setup

    assert setup.quiet_text_progress_bars() is (importlib.util.find_spec("ipywidgets") is None)
