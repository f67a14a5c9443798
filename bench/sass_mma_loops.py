"""SASS proxy of the tensor-core kernels (``cuda/conv2d_mma.cu``), loop by loop.

``bench/sass_check.py`` reports the hottest loop of the kernels ``auto`` launches;
the mma kernels hold several mainloops each (the channel-inner slab gather, the
generic element gather), so this lists, for every registered instance, every loop
whose body holds HMMA instructions: its length, HMMA count and share, instructions
per HMMA, shared loads by width, global loads, shared stores and barriers, plus the
registers and spills ptxas reports. A proxy, not a measurement::

    PYTHONPATH=. python bench/sass_mma_loops.py [--arch sm_90] [--match TEXT]

Needs nvcc on PATH and ``cuobjdump`` (PATH, or the ``nvidia-cuda-cuobjdump`` wheel's
``nvidia/cu13/bin``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from gpuconv._kernels import KERNELS, compile_options, source_dir  # noqa: E402

SOURCE = "conv2d_mma.cu"
_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    import nvidia  # the cuobjdump wheel

    return os.path.join(list(nvidia.__path__)[0], "cu13", "bin", name)


def build(arch: str, names: list[str]) -> tuple[str, str]:
    """(ptxas report, cuobjdump -sass text) of the named instances."""
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    refs = ",\n".join(f"    (const void*)&{n}" for n in names)
    with tempfile.TemporaryDirectory() as tmp:
        tu = os.path.join(tmp, "tu.cu")
        with open(tu, "w") as f:
            f.write(f'#include "{SOURCE}"\nconst void* instances[] = {{\n{refs}\n}};\n')
        cubin = os.path.join(tmp, "k.cubin")
        p = subprocess.run(
            ["nvcc", f"-arch={arch}", *opts, "-ftz=true", "-Xptxas", "-v", "-cubin",
             "-I", str(source_dir()), tu, "-o", cubin],
            capture_output=True, text=True, check=False)
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin],
                              capture_output=True, text=True, check=True).stdout
    return p.stderr, sass


def hmma_loops(body: str) -> list[list[str]]:
    """Opcode lists of the backward-branch loops of a function that hold HMMA."""
    ins = [(int(m.group(1), 16), m.group(3), m.group(4)) for m in _INS.finditer(body)]
    index = {a: i for i, (a, _, _) in enumerate(ins)}
    loops = []
    for i, (a, op, rest) in enumerate(ins):
        m = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
        if m and int(m.group(1), 16) < a and int(m.group(1), 16) in index:
            ops = [o for _, o, _ in ins[index[int(m.group(1), 16)]:i + 1]]
            if any(o.startswith("HMMA") for o in ops):
                loops.append(ops)
    return loops


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--match", default="")
    args = ap.parse_args(argv)
    names = [n for n in KERNELS[SOURCE] if args.match in n]
    report, sass = build(args.arch, names)
    regs: dict[str, str] = {}
    spill: dict[str, str] = {}
    cur = None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        cur = m.group(1) if m else cur
        m = re.search(r"(\d+) bytes spill stores", line)
        if m and cur:
            spill[cur] = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            regs[cur] = m.group(1)
    for fn in re.split(r"\n\s*Function : ", sass)[1:]:
        name = fn.split("\n", 1)[0].strip()
        pretty = subprocess.run(["c++filt"], input=name, capture_output=True,
                                text=True, check=False).stdout.strip() or name
        pretty = re.sub(r"\(.*", "", pretty).replace("void ", "")
        r, sp = regs.get(name, "?"), spill.get(name, "?")
        print(f"{pretty:60s} regs {r:>3}  spill {sp}")
        for ops in hmma_loops(fn):
            n = len(ops)
            h = sum(o.startswith("HMMA") for o in ops)
            lds = {w: sum(o.startswith("LDS") and o.endswith(w) for o in ops)
                   for w in (".64", ".128")}
            lds32 = sum(o.startswith("LDS") for o in ops) - sum(lds.values())
            count = {p: sum(o.startswith(p) for o in ops)
                     for p in ("LDG", "STS", "BAR")}
            print(f"    loop {n:4d}  HMMA {h:3d} ({100 * h / n:4.1f} %, {n / h:5.1f} "
                  f"instr/HMMA)  LDS.32 {lds32:2d} .64 {lds['.64']:2d} "
                  f".128 {lds['.128']:2d}  LDG {count['LDG']:3d}  STS {count['STS']:2d}"
                  f"  BAR {count['BAR']}")


if __name__ == "__main__":
    main()
