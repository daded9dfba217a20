"""The documentation: every public name has an API page, and relative links resolve.

The API check reads the built site: the one ``bash scripts/test.sh`` builds just before
pytest (it sets ``PROFIT_DOCS_HTML``), or else a fresh build into a temporary folder with the
test command's flags (warnings are errors).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import profit_optax

ROOT = Path(__file__).resolve().parents[2]

#: Folders whose Markdown is not the project's own (environments, build outputs, run outputs).
SKIP = {".venv", ".git", "_build", "runs", "node_modules", ".pytest_cache", ".ruff_cache"}

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def _markdown_files() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*.md")
        if not SKIP & set(p.relative_to(ROOT).parts) and not p.name.endswith(".egg-info")
    )


def _anchor(heading: str) -> str:
    """A heading's anchor as GitHub writes it (MyST's differ: same-page anchors are for GitHub)."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _relative_links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _anchors(path: Path) -> set[str]:
    return {_anchor(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text()))}


def test_markdown_links_resolve():
    """Every relative link of every Markdown file in the repository (README, CONTRIBUTING,
    docs/, results and benchmark notes) names a file or folder that exists, and a link to
    ``#anchor``, in the same file or in another Markdown file, names one of its headings."""
    files = _markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "results.md" in files
    broken = []
    for path in files:
        for target in _relative_links(path):
            file, _, anchor = target.partition("#")
            linked = path.parent / file if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "links to missing files or headings:\n" + "\n".join(broken)


def test_anchor_follows_github():
    assert _anchor("Does PROFIT help?") == "does-profit-help"
    assert _anchor("The paper's 2D toy (`bash scripts/demo.sh`)") == (
        "the-papers-2d-toy-bash-scriptsdemosh"
    )


def public_names() -> list[str]:
    """Every public name of the package: ``profit_optax.__all__``, and the ``__all__`` of each
    public submodule in it, dotted (``masks.head_mask``)."""
    names = []
    for name in profit_optax.__all__:
        names.append(name)
        value = getattr(profit_optax, name)
        if isinstance(value, types.ModuleType):
            names += [f"{name}.{sub}" for sub in getattr(value, "__all__", ())]
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = os.environ.get("PROFIT_DOCS_HTML")
    if built:
        return Path(built)
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path_factory.mktemp("html")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(tmp_path_factory.mktemp("doctrees")), str(ROOT / "docs"), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.slow
def test_every_public_name_has_an_api_page(site):
    """Each public name has its own page in the built site, and that page documents the
    object (autodoc found it: its anchor is there), so a name added to ``__all__`` without a
    documentable object, or a reference that stops following ``__all__``, fails."""
    missing = []
    for name in public_names():
        page = site / "_autosummary" / f"profit_optax.{name}.html"
        ids = (f'id="profit_optax.{name}"', f'id="module-profit_optax.{name}"')
        if not page.is_file() or not any(i in page.read_text() for i in ids):
            missing.append(name)
    assert not missing, f"public names without an API page: {missing}"
    index = (site / "_autosummary" / "profit_optax.html").read_text()
    assert all(f"profit_optax.{name}.html" in index for name in profit_optax.__all__)
