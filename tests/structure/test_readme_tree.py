"""The README's file tree names what the repository holds, and only that."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tree_entries() -> dict[str, str]:
    """Return ``{path: description}`` of the README's "File tree" block (continuation lines joined)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## File tree", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    last = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):
            entries[last] += " " + line.strip()
            continue
        paths, _, description = re.match(r"(\S+(?: \.\.\. \S+| tests/\S+)*)\s*(.*)", line).group(1, 0, 2)
        for path in paths.split():
            if path != "...":
                entries[path] = description
                last = path
    return entries


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if (REPO / line).exists()]


def test_every_path_of_the_tree_exists():
    missing = [path for path in tree_entries() if not (REPO / path).exists()]
    assert missing == [], f"the README's file tree names paths that do not exist: {missing}"


def test_every_module_folder_and_script_is_in_the_tree():
    entries = tree_entries()
    named = set(entries)
    wanted = set()
    for path in tracked():
        parts = Path(path).parts
        if parts[0] in ("tools", "bench", "docs") and len(parts) == 2:
            wanted.add(path)
        elif parts[0] == "dasd_utils" and len(parts) == 2 and path.endswith(".py"):
            wanted.add(path)
        elif parts[0] == "dasd_utils" and len(parts) > 2:
            wanted.add(f"{parts[0]}/{parts[1]}/")
        elif parts[0] == "tests" and len(parts) > 2:
            wanted.add(f"tests/{parts[1]}/")
    missing = sorted(w for w in wanted if w not in named)
    assert missing == [], f"add these to the README's file tree: {missing}"


def test_each_subpackage_line_names_its_modules():
    entries = tree_entries()
    unnamed = []
    for folder in sorted(p for p in entries if p.startswith("dasd_utils/") and p.endswith("/") and p != "dasd_utils/"):
        for module in sorted((REPO / folder).glob("*.py")):
            if module.name != "__init__.py" and module.name not in entries[folder]:
                unnamed.append(f"{folder}{module.name}")
    assert unnamed == [], f"the tree's package lines do not name these modules: {unnamed}"


def test_the_reader_sees_continuation_lines():
    entries = tree_entries()
    assert "phase.py (stages, summary)" in entries["dasd_utils/teacher/"]
