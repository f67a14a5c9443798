"""The README and docs/: every ``>>>`` example runs as shown, every relative link
points to a file (and heading) that exists, and the set-up commands are CI's.

Fast: small arrays only, nothing timed, no subprocess.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The pages whose ``>>>`` examples run here.
DOCTEST_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Every Markdown page of the project whose links are checked.
LINKED_FILES = [
    *DOCTEST_FILES,
    ROOT / "bench" / "README.md",
    ROOT / "examples" / "README.md",
]
# Optional packages a page's examples import (the page is skipped without them).
NEEDS = {
    "README.md": ("torch",),
    "dask.md": ("dask.array", "distributed"),
    "torch.md": ("torch",),
}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_the_pages_exist():
    names = {p.name for p in DOCTEST_FILES}
    for page in ("semantics.md", "backends.md", "cuda.md", "testing.md",
                 "performance.md", "dask.md", "examples.md", "torch.md"):
        assert page in names, page


@pytest.mark.parametrize("path", DOCTEST_FILES, ids=_rel)
def test_examples_run(path):
    for mod in NEEDS.get(path.name, ()):
        # CI installs every extra (GPUCONV_CI=1): there a missing one fails.
        if not _module_available(mod) and not os.environ.get("GPUCONV_CI"):
            pytest.skip(f"{mod} is not installed (needed by {path.name}'s examples)")
    text = path.read_text()
    # One example per '>>>' line: a count that disagrees means doctest did not see
    # an example (e.g. a prompt without the space after it).
    prompts = len(re.findall(r"^\s*>>>", text, flags=re.M))
    result = doctest.testfile(str(path), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {_rel(path)} failed"
    assert result.attempted == prompts


def test_the_user_pages_have_examples():
    """The pages a user reads first show runnable code (not only prose)."""
    for name in ("README.md", "docs/semantics.md", "docs/backends.md"):
        text = (ROOT / name).read_text()
        assert len(re.findall(r"^\s*>>>", text, flags=re.M)) >= 10, name


def test_readme_setup_commands_are_the_ci_ones():
    text = (ROOT / "README.md").read_text()
    install_demo = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . "
                    "&& python -m gpuconv demo")
    install_test = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e "
                    "'.[test,dask,examples]' && python -m pytest -q")
    assert f"    {install_demo}\n" in text
    assert f"    {install_test}\n" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test,dask,examples]'" in ci
    assert "python -m pytest -q" in ci


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 210


# ----------------------------------------------------------------------------
# links
# ----------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.I)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def links(text: str) -> list[str]:
    """Every link target of a Markdown text (inline, reference, HTML)."""
    text = _FENCE.sub("", _COMMENT.sub("", text))
    out = []
    for line in text.splitlines():
        if line.startswith("    ") and not line.lstrip().startswith(("-", "*", "|")):
            continue  # an indented code block
        line = _CODE_SPAN.sub("", line)
        out += _INLINE_LINK.findall(line) + _HTML_LINK.findall(line)
    return out + _REF_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_link_parser_and_slug():
    text = ("See [a](docs/a.md#x-y) and ![c](img.png \"t\"), `[no](code.md)`,\n"
            "<!-- [no](comment.md) -->\n```\n[no](fence.md)\n```\n[r]: ref.md\n"
            "<a href=\"html.md\">h</a>\n")
    assert links(text) == ["docs/a.md#x-y", "img.png", "html.md", "ref.md"]
    assert slug("On a GPU: `bench/gpu_check.sh`") == "on-a-gpu-benchgpu_checksh"
    assert slug("`convolve2d`, `correlate2d`: SciPy's") == (
        "convolve2d-correlate2d-scipys")
    assert slug("'same' with even kernels") == "same-with-even-kernels"


@pytest.mark.parametrize("path", LINKED_FILES, ids=_rel)
def test_relative_links_point_to_existing_files(path):
    bad = []
    for target in links(path.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
            continue  # http:, https:, mailto: ...
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in dest.parents and dest != ROOT:
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"{target}: no heading #{fragment} in {_rel(dest)}")
    assert not bad, f"{_rel(path)}: " + "; ".join(bad)


def test_every_page_of_docs_is_linked_from_the_index():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, page.name
