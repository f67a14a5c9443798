"""The kernel registry and the CUDA sources agree, and the sources follow the rules.

- every name the registry lists is a ``__global__`` kernel defined in its source,
  and every ``__global__`` kernel of every source is registered (both ways);
- every ``.cu`` opens with a comment naming the file and listing its variants;
- every ``__syncthreads`` has a one-line reason (same line or the line above).

Runs everywhere (no nvcc, no GPU): it reads the sources as text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuconv._kernels import KERNELS, source_dir

SOURCES = sorted(p.name for p in source_dir().glob("*.cu"))
HEADERS = sorted(p.name for p in source_dir().glob("*.cuh"))


def _strip_comments(text: str) -> str:
    text = re.sub(
        r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S
    )
    return re.sub(r"//[^\n]*", "", text)


def _skip_parens(text: str, i: int) -> int:
    """Index just after the parenthesised group that starts at ``text[i] == '('``."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced parentheses")


def global_kernels(text: str) -> set[str]:
    """Names of the ``__global__`` functions defined in a CUDA source."""
    code = _strip_comments(text)
    names = set()
    for m in re.finditer(r"\b__global__\b", code):
        i = m.end()
        while True:
            tok = re.compile(r"\s*([A-Za-z_]\w*)\s*").match(code, i)
            if tok is None:
                raise AssertionError(f"cannot parse the __global__ at {m.start()}")
            word = tok.group(1)
            i = tok.end()
            if word == "__launch_bounds__":
                i = _skip_parens(code, code.index("(", i - 1))
                continue
            if i < len(code) and code[i] == "(":
                names.add(word)
                break
    return names


def _base(name: str) -> str:
    return name.split("<", 1)[0].strip()


def test_parser_handles_launch_bounds_and_templates():
    text = (
        "template <typename T, int A>\n"
        "__global__ void __launch_bounds__(A * 2, f(A, 3))\n"
        "    k_one(const T* x) {}\n"
        "// __global__ void commented_out(int) {}\n"
        "__global__ void k_two(int n) { }\n"
    )
    assert global_kernels(text) == {"k_one", "k_two"}


@pytest.mark.parametrize("source", sorted(KERNELS))
def test_registered_names_are_defined_in_their_source(source):
    path = source_dir() / source
    assert path.is_file(), f"{source} is registered but does not exist"
    defined = global_kernels(path.read_text())
    missing = sorted({_base(n) for n in KERNELS[source]} - defined)
    assert not missing, f"registered but not a __global__ kernel of {source}: {missing}"


@pytest.mark.parametrize("source", SOURCES)
def test_every_kernel_in_the_sources_is_registered(source):
    defined = global_kernels((source_dir() / source).read_text())
    assert source in KERNELS, (
        f"{source} has kernels {sorted(defined)} but no registry entry"
    )
    unregistered = sorted(defined - {_base(n) for n in KERNELS[source]})
    assert not unregistered, f"kernels of {source} without a registered instance: " + (
        ", ".join(unregistered)
    )


def _header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        lines.append(line[2:].strip())
    return "\n".join(lines)


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_opens_with_its_variants(source):
    text = (source_dir() / source).read_text()
    header = _header_comment(text)
    assert header.startswith(f"{source}:"), (
        f"{source} must open with a comment '// {source}: <what it computes>'"
    )
    assert re.search(r"\bvariants?\b", header, re.I), (
        f"the opening comment of {source} must list its variants"
    )
    stem = Path(source).stem
    for base in sorted({_base(n) for n in KERNELS.get(source, ())}):
        variant = base[len(stem) + 1:] if base.startswith(stem + "_") else base
        assert variant in header or base in header, (
            f"variant {variant!r} ({base}) is not described in the opening comment "
            f"of {source}"
        )


def bare_syncthreads(name: str, text: str) -> list[str]:
    """Lines calling ``__syncthreads*`` without a comment on them or just above."""
    lines = text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        code = line.split("//", 1)[0]
        if not re.search(r"\b__syncthreads\w*\s*\(", code):
            continue
        same_line = "//" in line and line.index("//") > line.index("__syncthreads")
        above = i > 0 and lines[i - 1].strip().startswith("//")
        if not (same_line or above):
            bare.append(f"{name}:{i + 1}: {line.strip()}")
    return bare


def test_syncthreads_check_bites():
    text = (
        "    __syncthreads();  // tile staged\n"
        "    // all reads done before the next overwrite\n"
        "    __syncthreads();\n"
        "    x = 1;\n"
        "    __syncthreads_or(p);\n"
    )
    assert bare_syncthreads("t.cu", text) == ["t.cu:5: __syncthreads_or(p);"]


@pytest.mark.parametrize("name", SOURCES + HEADERS)
def test_every_syncthreads_has_a_reason(name):
    bare = bare_syncthreads(name, (source_dir() / name).read_text())
    assert not bare, "__syncthreads without a comment giving its reason:\n" + "\n".join(
        bare
    )
