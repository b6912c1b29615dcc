"""Markdown -> standalone HTML for the report, with its safety rules: raw HTML in the Markdown is
shown as text, only image files inside the run are embedded (as data URIs), links keep only
http(s), mailto and in-page targets."""

from __future__ import annotations

import base64
import html
import logging
import os
import re
from pathlib import Path
from urllib.parse import unquote

from .figures import image_mime, inside

log = logging.getLogger("dasd_utils.report")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.55;
       max-width: 54rem; margin: 2rem auto; padding: 0 1.2rem; color: #1f2328; background: #fff; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .92rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: .8rem auto; border: 1px solid #eaeef2; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; white-space: pre-wrap;
      word-wrap: break-word; font-size: .85rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
blockquote { margin: 1rem 0; padding: .6rem 1rem; border-left: 5px solid #d4a72c; background: #fff8c5; }
blockquote p { margin: .3rem 0; }
em.note { color: #57606a; }
"""


_IMG_TAG = re.compile(r'<img\b[^>]*?\bsrc="([^"]*)"[^>]*>', re.IGNORECASE)
_URL_ATTR = re.compile(r'\b(href|src)="([^"]*)"', re.IGNORECASE)
_SAFE_URL = re.compile(r"(?i)^(https?://|mailto:|#|data:image/(png|jpeg|gif|webp);base64,)")


def _markdown_renderer():
    """Return a Python-Markdown converter that shows raw HTML as text instead of passing it through."""
    import markdown

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.ESCAPED_CHARS.extend(c for c in "<|" if c not in md.ESCAPED_CHARS)  # "\<" and "\|" from md_escape
    return md


def markdown_to_html(
    markdown_text: str, base_dir: str | os.PathLike, title: str = "Rapport DASD", root: str | os.PathLike | None = None
) -> str:
    """Return a standalone HTML page: the Markdown rendered, figures inlined as data URIs, CSS inline.

    Raw HTML in the Markdown is shown as text, never passed through. Only image files (PNG, JPEG,
    GIF, WebP) that resolve, symlinks followed, to a file inside ``root`` (default: the parent
    of ``base_dir``, i.e. the run directory for ``<run>/report``) are embedded; any other image
    is replaced by a note. Links keep only http(s), mailto and in-page targets.
    """
    base_dir = Path(base_dir)
    root = Path(root) if root is not None else base_dir.parent
    body = _markdown_renderer().convert(markdown_text)

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        if src.startswith("data:"):
            return match.group(0) if _SAFE_URL.match(src) else ""
        candidate = base_dir / unquote(src)
        if not (os.path.lexists(candidate) or candidate.exists()):
            raise FileNotFoundError(f"figure {src} referenced by the report is missing ({candidate})")
        path = inside(candidate, root)
        mime = image_mime(path) if path is not None else None
        if path is None or mime is None:
            log.warning("report: figure %s is not embedded (not an image file inside %s)", src, root)
            return f'<em class="note">[figure non intégrée : {html.escape(Path(src).name)} n\'est pas une image du run]</em>'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return match.group(0).replace(f'src="{match.group(1)}"', f'src="data:{mime};base64,{data}"', 1)

    def safe_url(match: re.Match[str]) -> str:
        # Browsers ignore whitespace and control characters inside a scheme ("java\tscript:").
        url = re.sub(r"[\x00-\x20]", "", html.unescape(match.group(2)))
        relative = not re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", url)
        return match.group(0) if relative or _SAFE_URL.match(url) else f'{match.group(1)}="#"'

    body = _IMG_TAG.sub(inline, body)
    body = _URL_ATTR.sub(safe_url, body)
    return (
        "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
