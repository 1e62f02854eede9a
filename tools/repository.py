"""The one place the repository's address is set: ``[project.urls] Repository`` in pyproject.toml.

The notebooks' ``SEGLIB_SOURCE`` default (``git+<url>``), their "Open in Colab" badges and the README's badges
are derived from it. ``python tools/repository.py`` checks they agree (a test runs it);
``python tools/repository.py https://github.com/<owner>/<name>`` (``make repository URL=...``) sets the address in
all of them at once. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["pyproject.toml", "README.md", *sorted(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))]
URL = re.compile(r'^Repository = "https://github\.com/([\w.-]+)/([\w.-]+)"$', re.M)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+)/([\w.-]+)/blob/([\w.-]+)/notebooks/([\w.-]+)\.ipynb")
SOURCE = re.compile(r'^SEGLIB_SOURCE = "([^"]*)"', re.M)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(owner, name)`` of ``[project.urls] Repository`` in pyproject.toml; ValueError if it is missing."""
    m = URL.search((root / "pyproject.toml").read_text())
    if not m:
        raise ValueError('pyproject.toml needs [project.urls] Repository = "https://github.com/<owner>/<name>"')
    return m.group(1), m.group(2)


def problems(root: Path = ROOT) -> list[str]:
    """Every place that disagrees with the repository in pyproject.toml (empty: all agree)."""
    owner, name = repository(root)
    out = []
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    readme = (root / "README.md").read_text()
    for nb in notebooks:
        cells = json.loads(nb.read_text())["cells"]
        text = "".join("".join(c["source"]) + "\n" for c in cells)
        badges = BADGE.findall(text)
        if [b for b in badges if b != (owner, name, "main", nb.stem)] or not badges:
            out.append(f"{nb.name}: badge must be colab.research.google.com/github/{owner}/{name}/blob/main/"
                       f"notebooks/{nb.stem}.ipynb, found {badges}")
        sources = SOURCE.findall(text)
        if sources != [f"git+https://github.com/{owner}/{name}"]:
            out.append(f"{nb.name}: SEGLIB_SOURCE default must be git+https://github.com/{owner}/{name}, found {sources}")
        if (owner, name, "main", nb.stem) not in BADGE.findall(readme):
            out.append(f"README.md: no Colab badge for {nb.name} at github/{owner}/{name}/blob/main")
    for b in BADGE.findall(readme):
        if b[:3] != (owner, name, "main"):
            out.append(f"README.md: badge {b} does not point at {owner}/{name} main")
    return out


def set_repository(url: str, root: Path = ROOT) -> None:
    """Point pyproject.toml, the README badges, the notebook badges and ``SEGLIB_SOURCE`` at ``url``
    (``https://github.com/<owner>/<name>``). Raises ValueError for any other form of address."""
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", url)
    if not m:
        raise ValueError(f"{url!r} is not a GitHub repository address such as https://github.com/<owner>/seglib")
    old, new = "/".join(repository(root)), f"{m.group(1)}/{m.group(2)}"
    for rel in FILES:
        p = root / rel
        text = p.read_text()
        p.write_text(text.replace(f"github.com/{old}", f"github.com/{new}").replace(f"/github/{old}/", f"/github/{new}/"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        set_repository(sys.argv[1])
    errors = problems()
    print("\n".join(errors) or f"repository https://github.com/{'/'.join(repository())}: notebooks, badges and README agree")
    sys.exit(1 if errors else 0)
