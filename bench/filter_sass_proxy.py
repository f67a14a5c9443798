"""SASS/ptxas proxy of the tiled filter kernels, without a GPU (a prediction only).

For the instance ``gpuconv._plan_filter.tiled_config`` picks for a ``same``/fill
convolution of an N x N image (default 8192) with k x k kernels (float32/float64
k = 3, 5, 7, 9; complex64 and an even k on the runtime-size path), it builds the
registered instances of ``cuda/filter2d.cu`` with nvcc (CuPy's options, sm_90) and
prints one row per case:

- ``regs``: ptxas registers per thread (spills are reported and count as failures);
- ``block``, ``smem``: the planned block and dynamic shared memory per block;
- ``blk/SM``, ``occ%``: resident blocks per SM on an H100/H200 (64K registers,
  228 KiB shared memory with 1 KiB reserved per block, 64 warps, 32 blocks) and the
  resulting warp occupancy;
- ``ldfl``: tile loads each thread has in flight: the runtime-size instances'
  128-bit ``load_batch``; the compile-time instances stage the whole tile with
  cp.async (16-byte chunks when the tile starts on a vector, else one element per
  copy), ``ldfl`` is then their copies per thread; ``KiB/SM``: bytes in flight per
  SM at that occupancy (DRAM latency x bandwidth per SM is about 20-25 KiB on an
  H200: below it the loader is latency-bound);
- ``LDG/out``, ``STG/out``: 128-bit global loads and stores per output of an
  interior tile (tile + halo over outputs; the halo re-reads are L2 hits);
- ``FMA%``, ``loop``: the FMA share and length of the hottest loop (the per-tile
  loop, as ``../shared/tools/sass_report.py`` finds it; static: it includes the
  border and scalar branches an interior tile never runs);
- ``LDS128/o``, ``LDS/o``, ``BAR``: 128-bit and all shared-memory loads in that loop
  per output of a thread (static: the border tiles' map reads are among ``LDS``) and
  its barrier instructions (an interior tile runs one of them);
- ``pipe`` rows (``--pipelined``): ``filter2d_tiled_pipelined`` beside the
  default (two buffers in ``smem``; ``KiB/SM`` is then in flight during the taps
  too, not only while a block waits for its tile; ``BAR``: barriers of the
  persistent tile loop, one per tile);
- ``t/slot``: tiles per resident block slot (132 SMs): the default grid's waves
  (a fractional last wave is its tail), the pipelined grid's tiles per block;
- ``tFMA/o``, ``tLDS/o``, ``tOth/o``, ``tFMA%``: the interior tile's tap code
  (the branch-free stretch of SASS with the most multiply-adds: every tap of the
  compile-time instances, unrolled, run once per tile, no loader or border code)
  per output of a thread: multiply-adds, shared loads (any width: tile rows and
  weights) and all other instructions (address and integer arithmetic, moves),
  and the multiply-adds' share of it. The runtime-size instances' stretch is one
  tap chunk of their loop (a lower bound of their per-output cost).

Run from the repository root (nvcc, cuobjdump and nvdisasm on PATH)::

    python bench/filter_sass_proxy.py [--n 8192] [--arch sm_90] [--alternatives]
        [--pipelined]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gpuconv import _plan_filter as pf  # noqa: E402
from gpuconv._filter_args import FilterProblem  # noqa: E402
from gpuconv._kernels import compile_options, source_dir  # noqa: E402

CASES = [(dt, k) for dt in ("float32", "float64") for k in (3, 5, 7, 9)] + [
    ("complex64", 3),
    ("float32", 4),
]
FMA = ("FFMA", "DFMA")
INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def _hottest_loop(body: str) -> list[tuple[int, str, str]]:
    ins = [(int(m.group(1), 16), m.group(3), m.group(4)) for m in INS.finditer(body)]
    addr = {a: i for i, (a, _, _) in enumerate(ins)}
    best: tuple[int, list] | None = None
    for i, (a, op, rest) in enumerate(ins):
        m = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
        if m and int(m.group(1), 16) < a and int(m.group(1), 16) in addr:
            loop = ins[addr[int(m.group(1), 16)] : i + 1]
            fma = sum(1 for _, o, _ in loop if o.split(".")[0] in FMA)
            if best is None or fma > best[0]:
                best = (fma, loop)
    return best[1] if best else ins


#: instructions that end a straight-line stretch of SASS
_CONTROL = ("BRA", "BAR", "EXIT", "BSSY", "BSYNC", "RET", "CALL", "WARPSYNC", "JMP")


def _compute_block(body: str) -> list[str]:
    """Opcodes of the interior tile's tap code: the branch-free stretch of SASS
    (between two control instructions) holding the most multiply-adds. The
    compile-time instances unroll every tap, so this is the whole main loop an
    interior tile runs once, without the loader and border branches."""
    best: list[str] = []
    cur: list[str] = []
    nbest = -1
    for m in INS.finditer(body + "/*ffffffff*/ EXIT ;"):
        op = m.group(3)
        if op.split(".")[0] in _CONTROL:
            n = sum(1 for o in cur if o.split(".")[0] in FMA)
            if n > nbest:
                best, nbest = cur, n
            cur = []
        else:
            cur.append(op)
    return best


def _build(names: list[str], arch: str) -> tuple[dict[str, int], list[str], str]:
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    refs = ",\n".join(f"    (const void*)&{n}" for n in names)
    with tempfile.TemporaryDirectory() as tmp:
        tu = os.path.join(tmp, "tu.cu")
        Path(tu).write_text(
            f'#include "filter2d.cu"\nconst void* instances[] = {{\n{refs}\n}};\n'
        )
        cub = os.path.join(tmp, "k.cubin")
        p = subprocess.run(
            ["nvcc", f"-arch={arch}", *opts, "-ftz=true", "-Xptxas", "-v", "-cubin",
             "-I", str(source_dir()), tu, "-o", cub],
            capture_output=True, text=True,
        )  # fmt: skip
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        regs: dict[str, int] = {}
        spills: list[str] = []
        cur = None
        for line in p.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\S+)'", line)
            cur = m.group(1) if m else cur
            m = re.search(r"Used (\d+) registers", line)
            if m and cur:
                regs[cur] = int(m.group(1))
            m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if m and cur and (m.group(1) != "0" or m.group(2) != "0"):
                spills.append(f"{cur}: {line.strip()}")
        sass = subprocess.run(["cuobjdump", "-sass", cub], capture_output=True,
                              text=True).stdout  # fmt: skip
    return regs, spills, sass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--pipelined", action="store_true",
                    help="also the persistent, double-buffered instances "
                    "(gpuconv._plan_filter.PIPELINED; rows 'pipe')")  # fmt: skip
    ap.add_argument("--alternatives", action="store_true",
                    help="also the registered RY alternatives of the compile-time "
                    "instances (rows 'ryN', never planned)")  # fmt: skip
    args = ap.parse_args(argv)
    n = args.n
    plans = {}
    for dt, k in CASES:
        fp = FilterProblem(1, n, n, 1, k, k, k // 2, k // 2, n, n, "fill", 0.0,
                           np.dtype(dt))  # fmt: skip
        plans[(f"{dt} k{k}", dt, k)] = pf.tiled_config(fp)
        cfg = plans[(f"{dt} k{k}", dt, k)]
        if args.pipelined and (dt, k) in pf.PIPELINED and cfg is not None:
            smem = pf.pipelined_smem_bytes(np.dtype(dt).itemsize, cfg.block, cfg.ry,
                                           k, k)  # fmt: skip
            plans[(f"{dt} k{k} pipe", dt, k)] = pf.TiledConfig(
                pf.pipelined_name(dt, k, k, cfg.ry), cfg.ry, cfg.block, smem)
        alts = pf.RY_ALTERNATIVES.get(k, ()) if args.alternatives else ()
        for ry in alts:
            cfg = pf.tiled_config(fp, ry_override=ry)
            if cfg is not None:
                plans[(f"{dt} k{k} ry{ry}", dt, k)] = cfg
    names = sorted({c.kernel for c in plans.values()})
    regs, spills, sass = _build(names, args.arch)
    funcs = {}
    for f in re.split(r"\n\s*Function : ", sass)[1:]:
        mangled = f.split("\n", 1)[0].strip()
        pretty = subprocess.run(["c++filt"], input=mangled, capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        funcs[re.sub(r"\(.*", "", pretty).replace("void ", "")] = (mangled, f)
    print(f"{'case':16s} {'instance':36s} {'regs':>4s} {'block':>5s} {'smem':>6s} "
          f"{'blk/SM':>6s} {'occ%':>4s} {'ldfl':>4s} {'KiB/SM':>6s} {'LDG/out':>7s} "
          f"{'STG/out':>7s} {'FMA%':>4s} {'loop':>5s} {'LDS128/o':>7s} {'LDS/o':>6s} "
          f"{'BAR':>3s} {'tFMA/o':>6s} {'tLDS/o':>6s} {'tOth/o':>6s} "
          f"{'tFMA%':>5s} {'t/slot':>6s}")  # fmt: skip
    for (label, dt, k), cfg in plans.items():
        key = cfg.kernel.replace("gc_complex64", "gc_complex<float>")
        mangled, body = funcs[key]
        r = regs.get(mangled, 0)
        bx, by = cfg.block
        warps = -(-bx * by // 32)
        regs_warp = -(-r * 32 // 256) * 256
        blk = min(65536 // (regs_warp * warps), (228 * 1024) // (cfg.shared_mem + 1024),
                  64 // warps, 32)  # fmt: skip
        size = np.dtype(dt).itemsize
        rx, vec = pf.rx(size), 16 // size
        tw, th = bx * rx, by * cfg.ry
        compile_time = not cfg.kernel.endswith(f"0, 0, {cfg.ry}>")
        # tiles per resident block slot (132 SMs): the default grid's waves; the
        # pipelined grid's tiles per block (its last, partial tile round: the tail)
        tiles = -(-n // tw) * -(-n // th)
        slots = blk * 132
        if "pipelined" in cfg.kernel:
            slots = pf.pipelined_grid(
                FilterProblem(1, n, n, 1, k, k, k // 2, k // 2, n, n, "fill", 0.0,
                              np.dtype(dt)),
                cfg.block, cfg.ry, cfg.shared_mem)  # fmt: skip
            assert slots <= blk * 132, "the grid overestimates the resident blocks"
        rows, cols = th + k - 1, tw + k - 1
        nvec = -(-(vec - 1 + cols) // vec)
        if compile_time:
            # cp.async staging: the whole tile in flight at once, in 16-byte chunks
            # when the tile starts on a vector ('same': pad k // 2 % vec == 0), else
            # one element per copy; ldfl = copies per thread, KiB/SM = tile bytes
            sh = (-(k // 2)) % vec
            copies = rows * -(-cols // vec) if sh == 0 else rows * cols
            ldfl = -(-copies // (bx * by))
            kib = blk * rows * cols * size / 1024
        else:
            # gcf::load_batch of filter2d.cu: 128-bit loads in flight per thread
            ldfl = 2 if dt in ("float32", "float64") else 1
            kib = blk * bx * by * ldfl * 16 / 1024
        loop = _hottest_loop(body)
        fma = sum(1 for _, o, _ in loop if o.split(".")[0] in FMA)
        ops = [o for _, o, _ in loop]
        lds128 = sum(1 for o in ops if o.startswith("LDS.128"))
        lds = sum(1 for o in ops if o.startswith("LDS"))
        bar = sum(1 for o in ops if o.startswith("BAR"))
        outs = rx * cfg.ry
        tap = _compute_block(body)
        t_fma = sum(1 for o in tap if o.split(".")[0] in FMA)
        t_lds = sum(1 for o in tap if o.startswith("LDS"))
        t_oth = len(tap) - t_fma - t_lds
        print(
            f"{label:16s} {cfg.kernel:36s} {r:4d} {bx:2d}x{by:<2d} "
            f"{cfg.shared_mem:6d} {blk:6d} {100 * blk * warps / 64:4.0f} {ldfl:4d} "
            f"{kib:6.0f} "
            f"{rows * nvec / (tw * th):7.3f} {(1 / vec if rx % vec == 0 else 0):7.3f} "
            f"{100 * fma / len(loop):4.0f} {len(loop):5d} {lds128 / outs:7.2f} "
            f"{lds / outs:6.2f} {bar:3d} {t_fma / outs:6.2f} {t_lds / outs:6.2f} "
            f"{t_oth / outs:6.2f} {100 * t_fma / max(1, len(tap)):5.1f} "
            f"{tiles / slots:6.2f}"
        )
    for s in spills:
        print("SPILL", s)
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
