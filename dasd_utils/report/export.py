"""The report as a folder that stands on its own: ``rapport.md``, ``rapport.html`` and ``figures/``.

Inside a run the report links its figures as ``../figures/<name>.png``. :func:`export_report`
copies it out of the run (to the repository's ``report/`` for the reference report, or to a
folder a student downloads from Colab): the Markdown's figure links are rewritten to
``figures/<name>.png``, only the figures it shows are copied, and the HTML is rendered again
from that Markdown, figures embedded. An optional banner goes first (the reference report says
there that it is the demo's stand-in output).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .. import layout
from .build import build_report
from .html import markdown_to_html

#: A Markdown image: ``![alt](target)``.
_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\))")
FIGURES = "figures"


def _relink(markdown_text: str, report_dir: Path) -> tuple[str, list[Path]]:
    """Return the Markdown with every image link pointing into ``figures/``, and the figure files it shows."""
    shown: list[Path] = []

    def relink(match: re.Match[str]) -> str:
        source = (report_dir / unquote(match.group(2))).resolve()
        if not source.is_file():
            raise FileNotFoundError(f"figure {match.group(2)} referenced by the report is missing ({source})")
        if source not in shown:
            shown.append(source)
        return f"{match.group(1)}{FIGURES}/{quote(source.name)}{match.group(3)}"

    return _IMAGE.sub(relink, markdown_text), shown


def export_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike, banner: str | None = None,
                  force: bool = False) -> dict[str, Any]:
    """Build the run's report (reused when up to date) and write it as a standalone folder ``out_dir``.

    ``out_dir`` receives ``rapport.md`` (figures linked as ``figures/<name>``, ``banner`` first),
    ``rapport.html`` (figures embedded) and ``figures/`` (only the figures the report shows; older
    PNGs there are removed). Returns the paths written.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    built = build_report(run_dir, force=force)
    report_dir = layout.report_dir(run_dir)
    text, figures = _relink(Path(built["markdown"]).read_text(encoding="utf-8"), report_dir)
    if banner:
        text = banner.rstrip() + "\n\n" + text
    figures_out = out_dir / FIGURES
    figures_out.mkdir(parents=True, exist_ok=True)
    for old in figures_out.glob("*.png"):
        if old.name not in {f.name for f in figures}:
            old.unlink()
    for figure in figures:
        shutil.copyfile(figure, figures_out / figure.name)
    md_path, html_path = out_dir / "rapport.md", out_dir / "rapport.html"
    md_path.write_text(text, encoding="utf-8")
    html_path.write_text(markdown_to_html(text, out_dir, title=f"Rapport DASD — {run_dir.resolve().name}", root=out_dir),
                         encoding="utf-8")
    return {"markdown": md_path, "html": html_path, "figures": [figures_out / f.name for f in figures]}


def bundle(folder: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Write ``folder`` as a zip archive at ``archive`` (``.zip`` added) and return its path (what Colab offers for download)."""
    base = str(Path(archive).with_suffix(""))
    return Path(shutil.make_archive(base, "zip", root_dir=str(folder)))


__all__ = ["FIGURES", "bundle", "export_report"]
