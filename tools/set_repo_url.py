"""Point the notebooks and the README's badges at a published copy of this repository (a fork), in one command.

    python tools/set_repo_url.py https://github.com/me/dasd-course            # branch main
    python tools/set_repo_url.py git@github.com:me/dasd-course.git --branch tp4

On Colab and Kaggle every notebook starts on a new machine and clones the repository: the URL it
clones is ``DEFAULT_REPO_URL`` in the shared set-up cell (``notebooks/src/_setup.py``), and notebook
01's form field ``REPO_URL`` starts with the same value. The README's "Open in Colab" badges open the
notebooks from the same GitHub repository and branch. This rewrites those three places, then
rebuilds the notebooks from their sources (``tools/build_notebooks.py``: stored outputs are kept,
only the set-up cells change). Running it twice with the same URL changes nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_GITHUB = re.compile(r"^(?:https://github\.com/|git@github\.com:)(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")
#: (file, pattern, replacement template): the places that name the repository.
PLACES = (
    ("notebooks/src/_setup.py", r'^(DEFAULT_REPO_URL = )"[^"]*"', r'\g<1>"{clone}"'),
    ("notebooks/src/01_donnees.py", r'^(REPO_URL = )"[^"]*"(  # @param)', r'\g<1>"{clone}"\g<2>'),
    ("README.md", r"(https://colab\.research\.google\.com/github/)[^/\s)]+/[^/\s)]+/blob/[^\s)]+?(/notebooks/)",
     r"\g<1>{owner}/{name}/blob/{branch}\g<2>"),
)


class UrlError(ValueError):
    """The URL is not a GitHub repository's (the badges open notebooks through colab.research.google.com/github)."""


def parse_github_url(url: str) -> tuple[str, str]:
    """Return ``(owner, name)`` of a GitHub repository URL (https or ssh, with or without ``.git``)."""
    match = _GITHUB.match(url.strip())
    if match is None:
        raise UrlError(f"{url!r} is not a GitHub repository URL: expected https://github.com/OWNER/NAME "
                       "(Colab opens notebooks from GitHub only)")
    return match.group("owner"), match.group("name")


def rewrite(text: str, pattern: str, replacement: str) -> tuple[str, int]:
    """Return ``text`` with every match of ``pattern`` replaced (multi-line mode), and the number of matches."""
    return re.subn(pattern, replacement, text, flags=re.MULTILINE)


def set_repo_url(url: str, branch: str = "main", root: Path = ROOT) -> dict[str, int]:
    """Return ``{file: places rewritten}`` after pointing the set-up cells and the badges at ``url`` on ``branch``."""
    if not _BRANCH.match(branch):
        raise UrlError(f"{branch!r} is not a branch name")
    owner, name = parse_github_url(url)
    values = {"owner": owner, "name": name, "branch": branch, "clone": f"https://github.com/{owner}/{name}.git"}
    counts = {}
    for relative, pattern, template in PLACES:
        path = root / relative
        text, n = rewrite(path.read_text(encoding="utf-8"), pattern, template.format(**values))
        if n == 0:
            raise UrlError(f"{relative}: the repository URL was not found (pattern {pattern!r}); was the file reorganised?")
        path.write_text(text, encoding="utf-8")
        counts[relative] = n
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the GitHub repository students clone, e.g. https://github.com/me/dasd-course")
    parser.add_argument("--branch", default="main", help="branch the README's badges open (default: main)")
    args = parser.parse_args(argv)
    try:
        counts = set_repo_url(args.url, args.branch)
    except UrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for relative, n in counts.items():
        print(f"{relative}: {n} place(s)")
    sys.path.insert(0, str(ROOT / "tools"))
    import build_notebooks

    for path in build_notebooks.write():
        print(f"rebuilt {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
