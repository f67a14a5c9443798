"""SASS/ptxas proxy of the 1-D filter kernel ``filter1d_tiled``, without a GPU (a
prediction only).

Builds the registered instances of ``cuda/filter1d.cu`` with nvcc (CuPy's options)
and prints, per dtype:

- ``regs``: ptxas registers per thread (spills count as failures: tests/test_nvcc.py);
- ``smem k=3``/``k=10^4``: dynamic shared memory per block for a 3-tap and a
  10 000-tap kernel (``gpuconv._plan_filter.filter1d_smem_bytes``), and ``blk/SM``:
  resident blocks of 256 threads per SM on an H100/H200 (64K registers, 228 KiB
  shared memory with 1 KiB reserved per block, 2048 threads) for the 3-tap case;
- ``KiB/SM``: signal bytes a tile stages per SM at that occupancy (each block loads
  its TW-sample segment before computing; DRAM latency x bandwidth per SM is about
  20-25 KiB on an H200);
- the tap loop (the innermost loop holding multiply-adds): length, multiply-add
  share (``FFMA``/``DFMA``; ``IMAD`` for integers), shared loads (``LDS``),
  multiply-adds per shared load, and the share of all arithmetic (``FP%``: also
  ``FMUL``/``FADD``/``DMUL``/``DADD``; a complex multiply-add in NumPy's order is
  one multiply, two fused multiply-adds and two adds).

Run from the repository root (nvcc, cuobjdump and nvdisasm on PATH)::

    python bench/filter1d_sass_proxy.py [--arch sm_90]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuconv._kernels import KERNELS, compile_options, source_dir
from gpuconv._plan_filter import (
    F1D_THREADS,
    FILTER1D_DTYPES,
    filter1d_name,
    filter1d_smem_bytes,
)

SOURCE = "filter1d.cu"
INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def tap_loop(body: str, mad: tuple[str, ...]) -> list[tuple[int, str]] | None:
    """The innermost loop (no backward branch inside) with the most multiply-adds."""
    ins = [(int(m.group(1), 16), m.group(3), m.group(4)) for m in INS.finditer(body)]
    addr = {a: i for i, (a, _, _) in enumerate(ins)}
    loops = []
    for i, (a, op, rest) in enumerate(ins):
        m = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
        if m and int(m.group(1), 16) < a and int(m.group(1), 16) in addr:
            loops.append((addr[int(m.group(1), 16)], i))
    best = None
    for s, e in loops:
        if any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops):
            continue  # not innermost
        body_ins = [(a, op) for a, op, _ in ins[s : e + 1]]
        n = sum(op.split(".")[0] in mad for _, op in body_ins)
        if n and (best is None or n > best[0]):
            best = (n, body_ins)
    return None if best is None else best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="sm_90")
    args = ap.parse_args()
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    names = KERNELS[SOURCE]
    with tempfile.TemporaryDirectory() as tmp:
        tu = Path(tmp, "tu.cu")
        refs = ",\n".join(f"    (const void*)&{n}" for n in names)
        text = f'#include "{SOURCE}"\nconst void* instances[] = {{\n{refs}\n}};\n'
        tu.write_text(text)
        cub = Path(tmp, "k.cubin")
        p = subprocess.run(
            ["nvcc", f"-arch={args.arch}", *opts, "-ftz=true", "-Xptxas", "-v",
             "-cubin", "-I", str(source_dir()), str(tu), "-o", str(cub)],
            capture_output=True, text=True,
        )  # fmt: skip
        if p.returncode:
            sys.exit(p.stderr[-2000:])
        sass = subprocess.run(["cuobjdump", "-sass", str(cub)], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    regs, spills, cur = {}, {}, None
    for line in p.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            cur = m.group(1)
        m = re.search(r"(\d+) bytes spill stores", line)
        if m and cur:
            spills[cur] = int(m.group(1))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            regs[cur] = int(m.group(1))
    funcs = {
        f.split("\n", 1)[0].strip(): f for f in re.split(r"\n\s*Function : ", sass)[1:]
    }
    print(f"filter1d_tiled ({args.arch}): {F1D_THREADS} threads per block")
    print(f"{'dtype':11s} {'regs':>4s} {'spill':>5s} {'smem k=3':>8s} {'k=10^4':>7s} "
          f"{'blk/SM':>6s} {'KiB/SM':>6s} {'loop':>5s} {'MAD%':>5s} {'LDS':>4s} "
          f"{'MAD/LDS':>7s} {'FP%':>4s}")  # fmt: skip
    for dt in FILTER1D_DTYPES:
        import numpy as np

        size = np.dtype(dt).itemsize
        want = filter1d_name(dt)
        mangled = next(
            (k for k in funcs if _pretty(want) + "(" in _demangle(k)), None
        )
        if mangled is None:
            print(f"{dt:11s} not found")
            continue
        r = regs.get(mangled, 0)
        s3, s4 = filter1d_smem_bytes(size, 3), filter1d_smem_bytes(size, 10**4)
        blk = min(65536 // (max(r, 1) * F1D_THREADS), 228 * 1024 // (s3 + 1024), 8)
        tw_bytes = F1D_THREADS * 32
        mad = ("IMAD",) if np.dtype(dt).kind in "iu" else ("FFMA", "DFMA")
        loop = tap_loop(funcs[mangled], mad)
        if loop is None:
            print(f"{dt:11s} {r:4d} no tap loop")
            continue
        n = len(loop)
        nm = sum(op.split(".")[0] in mad for _, op in loop)
        nl = sum(op.startswith("LDS") for _, op in loop)
        fp = ("FFMA", "FMUL", "FADD", "DFMA", "DMUL", "DADD", "IMAD")
        nf = sum(op.split(".")[0] in fp for _, op in loop)
        print(f"{dt:11s} {r:4d} {spills.get(mangled, 0):5d} {s3:8d} {s4:7d} {blk:6d} "
              f"{blk * tw_bytes / 1024:6.0f} {n:5d} {100 * nm / n:4.0f}% {nl:4d} "
              f"{nm / max(nl, 1):7.1f} {100 * nf / n:3.0f}%")  # fmt: skip


_CPP = {
    "gc_uint32": "unsigned int", "gc_int32": "int", "gc_uint64": "unsigned long long",
    "gc_int64": "long long", "gc_complex64": "gc_complex<float>",
    "gc_complex128": "gc_complex<double>",
}  # fmt: skip


def _pretty(name: str) -> str:
    for k, v in _CPP.items():
        name = name.replace(k, v)
    return re.sub(r"\s+", "", name)


def _demangle(mangled: str) -> str:
    out = subprocess.run(["c++filt"], input=mangled, capture_output=True, text=True)
    return re.sub(r"\s+", "", out.stdout.strip())


if __name__ == "__main__":
    main()
