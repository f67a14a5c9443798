"""SASS proxy of the conv2d kernels ``auto`` launches on the benchmark layers (no GPU).

For every layer of ``bench_gpu_conv.LAYERS`` and every pass (forward, input
gradient, weight gradient) this records the launches ``algorithm='auto'`` makes
(the backend ops run on a device that records each launch and runs nothing), builds
exactly those kernel instances with nvcc for sm_90 (CuPy's NVRTC options plus
``-Xptxas -v``), disassembles them (``cuobjdump -sass``) and reports per kernel:

- registers (ptxas) and the warps per SM they allow (with the block size of the
  launch and the static shared memory; H100/H200: 64K registers, 2048 threads,
  228 KiB shared memory per SM, 32 blocks),
- its hottest loop (the backward branch whose body holds the most FMA
  instructions): length, FMA share, shared/global loads and stores, barriers and
  integer instructions.

Goals (issue 11): FMA share >= 80 % in the hottest loop of every main kernel and
registers that allow at least 8 warps per SM. Kernels whose loop holds no FMA
(reduces, pads) are listed but not held to the FMA goal.

It is a proxy, not a measurement: latency, bank conflicts and memory traffic still
decide the speed on a GPU. The hottest-loop heuristic and the instruction classes
follow ``/work/shared/tools/sass_report.py`` (the project's shared SASS report, by
the issue-11 author), copied here so that the check runs from the repository.

Needs nvcc on PATH and ``cuobjdump`` (PATH, or the ``nvidia-cuda-cuobjdump`` wheel:
``nvidia/cu13/bin``). Builds are cached by content hash under
``$GPUCONV_SASS_CACHE`` (default ``~/.cache/gpuconv/sass``)::

    PYTHONPATH=. python bench/sass_check.py [--arch sm_90] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from gpuconv import _gpu_conv  # noqa: E402
from gpuconv._conv_args import normalize_conv2d  # noqa: E402
from gpuconv._kernels import KERNELS, compile_options, source_dir  # noqa: E402

#: Issue-11 goals.
FMA_SHARE_GOAL = 0.80
WARPS_GOAL = 8
#: Per-SM limits of sm_80/sm_90 (H100/H200).
SM_REGISTERS = 65536
SM_MAX_WARPS = 64
SM_MAX_BLOCKS = 32
SM_SHARED_BYTES = 228 * 1024
BLOCK_RESERVED_SHARED = 1024

PASS_OPS = ("forward", "backward_input", "backward_weight")
FMA_OPS = ("FFMA", "DFMA", "HFMA2", "HMMA", "IMMA", "DMMA")
INT_OPS = ("IMAD", "IADD", "LOP", "ISETP", "SHF", "LEA", "SEL", "IABS", "I2F",
           "F2I", "IMNMX", "VIMNMX", "PRMT", "FLO", "POPC", "BMSK")
_INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("_sass_bench_gpu_conv",
                                                  HERE / "bench_gpu_conv.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------
# which kernels auto launches


class RecordingDevice:
    """A device on host memory whose launches are recorded, never run."""

    name = "record"

    def __init__(self) -> None:
        self.xp = np
        self.launches: list[Any] = []

    def launch(self, launch: Any) -> None:
        self.launches.append(launch)


@dataclass
class Use:
    """One kernel instance and the (layer, pass) rows that launch it."""

    source: str
    kernel: str
    threads: int
    rows: list[str] = field(default_factory=list)


def auto_kernels(layers: Any = None, weight_algorithm: str = "auto"
                 ) -> dict[str, Use]:
    """``kernel name -> Use`` of every launch ``auto`` makes on ``layers`` (default:
    the benchmark's ``LAYERS``), float32; the weight gradient with
    ``weight_algorithm`` (e.g. the op-level ``'nhwc'``)."""
    if layers is None:
        layers = _bench_module().LAYERS
    uses: dict[str, Use] = {}
    for layer in layers:
        p = normalize_conv2d(
            (layer.n, layer.c, layer.hw, layer.hw),
            (layer.k, layer.c, layer.ks, layer.ks),
            [np.dtype(np.float32)], bias_shape=(layer.k,), stride=layer.stride,
            padding=layer.padding,
        )
        for pass_name in PASS_OPS:
            dev = RecordingDevice()
            _run_pass(dev, pass_name, p,
                      weight_algorithm if pass_name == "backward_weight" else "auto")
            for launch in dev.launches:
                threads = int(np.prod(launch.block))
                use = uses.setdefault(launch.kernel,
                                      Use(launch.source, launch.kernel, threads))
                use.threads = max(use.threads, threads)
                row = f"{pass_name} {layer.name}"
                if row not in use.rows:
                    use.rows.append(row)
    return uses


def _run_pass(dev: RecordingDevice, pass_name: str, p: Any,
              algorithm: str = "auto") -> None:
    # Zero-filled host buffers: never read (the device runs nothing); np.empty
    # keeps the large ones unmapped.
    def buf(shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(shape, dtype=np.float32)

    if pass_name == "forward":
        _gpu_conv.conv2d_forward(buf(p.x_shape), buf(p.w_shape), buf((p.K,)), p,
                                 "auto", device=dev)
    elif pass_name == "backward_input":
        _gpu_conv.conv2d_backward_input(buf(p.y_shape), buf(p.w_shape), p, "auto",
                                        device=dev)
    else:
        _gpu_conv.conv2d_backward_weight(buf(p.y_shape), buf(p.x_shape), p,
                                         algorithm, False, device=dev)


# --------------------------------------------------------------------------------
# build and disassemble


def find_cuobjdump() -> str | None:
    """``cuobjdump`` on PATH or from the ``nvidia-cuda-cuobjdump`` wheel."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations if spec else None) or []:
        for sub in ("cu13/bin", "cuda_cuobjdump/bin"):
            cand = Path(base) / sub / "cuobjdump"
            if cand.exists():
                return str(cand)
    return None


def unavailable_reason() -> str | None:
    """Why the check cannot run here, or ``None``."""
    if shutil.which("nvcc") is None:
        return "nvcc is not on PATH"
    if find_cuobjdump() is None:
        return ("cuobjdump not found (pip install nvidia-cuda-cuobjdump "
                "nvidia-cuda-nvdisasm, or put CUDA's bin/ on PATH)")
    return None


def _cache_dir() -> Path:
    env = os.environ.get("GPUCONV_SASS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gpuconv" / "sass"


def _nvcc_options(arch: str) -> list[str]:
    opts = [o.replace("--std=", "-std=") for o in compile_options()]
    return [f"-arch={arch}", *opts, "-ftz=true", "-Xptxas", "-v", "-cubin"]


def build(source: str, names: list[str], arch: str = "sm_90") -> dict[str, str]:
    """``{"ptxas": report, "sass": disassembly}`` of ``names`` from ``source``."""
    names = sorted(names)
    refs = ",\n".join(f"    (const void*)&{n}" for n in names)
    tu = f'#include "{source}"\nconst void* instances[] = {{\n{refs}\n}};\n'
    h = hashlib.sha256()
    for p in sorted(source_dir().glob("*.cu*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(tu.encode())
    h.update(" ".join(_nvcc_options(arch)).encode())
    cache = _cache_dir() / f"{Path(source).stem}-{arch}-{h.hexdigest()[:24]}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        raise RuntimeError(unavailable_reason())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tu.cu"
        path.write_text(tu)
        cubin = Path(tmp) / "k.cubin"
        proc = subprocess.run(
            ["nvcc", *_nvcc_options(arch), "-I", str(source_dir()), str(path), "-o",
             str(cubin)], capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise RuntimeError(f"nvcc failed for {source}:\n{proc.stderr[-3000:]}")
        sass = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True,
                              text=True, timeout=300)
        if sass.returncode:
            raise RuntimeError(f"cuobjdump failed: {sass.stderr[-1000:]}")
    result = {"ptxas": proc.stdout + proc.stderr, "sass": sass.stdout}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = cache.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(result))
    tmp_path.replace(cache)
    return result


def ptxas_resources(report: str) -> dict[str, dict[str, int]]:
    """Mangled entry name -> registers, static shared bytes, spill bytes."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            cur = m.group(1)
            out[cur] = {"registers": 0, "smem": 0, "spill": 0}
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out[cur]["spill"] = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[cur]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            out[cur]["smem"] = int(s.group(1)) if s else 0
    return out


def is_fma(op: str, operands: str = "") -> bool:
    """An FMA-pipe multiply-add that does work: FFMA, DFMA, HFMA2, tensor-core MMAs;
    not ``HFMA2.MMA Rd, -RZ, RZ, 0, 0``, the compiler's idiom for zeroing a
    register."""
    if op.split(".")[0] not in FMA_OPS:
        return False
    return not (op.startswith("HFMA2") and "-RZ, RZ" in operands)


def hottest_loop(body: str) -> list[tuple[int, str]] | None:
    """The instructions ``(address, opcode)`` of the loop (a backward branch and
    its target) holding the most FMA instructions (:func:`is_fma`), or ``None``."""
    ins = [(int(m.group(1), 16), m.group(3), m.group(4)) for m in _INS.finditer(body)]
    index = {a: i for i, (a, _, _) in enumerate(ins)}
    best: tuple[int, list[tuple[int, str]]] | None = None
    for i, (a, op, rest) in enumerate(ins):
        if not op.startswith("BRA"):
            continue
        m = re.search(r"0x([0-9a-f]+)", rest)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target < a and target in index:
            part = ins[index[target]:i + 1]
            fma = sum(1 for _, o, r in part if is_fma(o, r))
            loop = [(ad, o if is_fma(o, r) or not o.startswith("HFMA2") else "MOV")
                    for ad, o, r in part]
            if best is None or fma > best[0]:
                best = (fma, loop)
    return None if best is None else best[1]


def warps_per_sm(registers: int, threads: int, smem: int) -> int:
    """Resident warps per SM of a launch (register allocation in 256-register units
    per warp; shared memory with the 1 KiB per-block reservation)."""
    warps = -(-threads // 32)
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_regs = SM_REGISTERS // (per_warp * warps)
    by_smem = SM_SHARED_BYTES // (smem + BLOCK_RESERVED_SHARED)
    blocks = min(by_regs, by_smem, SM_MAX_BLOCKS, SM_MAX_WARPS // warps)
    return blocks * warps


@dataclass
class Row:
    kernel: str
    source: str
    threads: int
    registers: int
    smem: int
    spill: int
    warps_per_sm: int
    loop_instructions: int
    fma: int
    lds: int
    ldg: int
    sts: int
    bar: int
    integer: int
    rows: list[str]

    @property
    def fma_share(self) -> float:
        return self.fma / self.loop_instructions if self.loop_instructions else 0.0

    @property
    def main(self) -> bool:
        """A main (reduction) kernel held to the FMA goal: every conv2d variant but
        the split-K reduces, the bias-only reduction, the padding kernels, the
        input gradient's col2im gather (additions of GEMM results), the NHWC
        packs and the width unfold (copies)."""
        copies = ("reduce", "bias_partial", "_pad_", "col2im", "nhwc_pack",
                  "unfold_width")
        return not any(t in self.kernel for t in copies)

    def meets_goals(self) -> bool:
        ok_warps = self.warps_per_sm >= WARPS_GOAL
        return ok_warps and (not self.main or self.fma_share >= FMA_SHARE_GOAL)


def _demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if tool is None:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True,
                         text=True).stdout.splitlines()
    return {n: re.sub(r"\(.*", "", d).replace("void ", "", 1).strip()
            for n, d in zip(names, out, strict=False)}


def _normal(name: str) -> str:
    """A name without spaces and without a defaulted trailing ``false`` template
    argument (the demangler spells defaults out)."""
    return re.sub(r"\s+", "", name).replace(",false>", ">")


def analyse(uses: dict[str, Use], arch: str = "sm_90") -> list[Row]:
    """One :class:`Row` per kernel of ``uses``."""
    by_source: dict[str, list[str]] = {}
    for use in uses.values():
        by_source.setdefault(use.source, []).append(use.kernel)
    rows = []
    for source, names in sorted(by_source.items()):
        for n in names:
            if n not in KERNELS[source]:
                raise KeyError(f"{n} is launched but not registered for {source}")
        res = build(source, names, arch)
        resources = ptxas_resources(res["ptxas"])
        funcs = {}
        for chunk in re.split(r"\n\s*Function : ", res["sass"])[1:]:
            funcs[chunk.split("\n", 1)[0].strip()] = chunk
        pretty = _demangle(list(funcs))
        wanted = {_normal(n): n for n in names}
        for mangled, body in funcs.items():
            name = wanted.get(_normal(pretty[mangled]))
            if name is None:
                continue
            use = uses[name]
            r = resources.get(mangled, {"registers": 0, "smem": 0, "spill": 0})
            loop = hottest_loop(body) or []

            def count(prefixes: tuple[str, ...], loop=loop) -> int:
                return sum(1 for _, o in loop if o.startswith(prefixes))

            rows.append(Row(
                kernel=name, source=source, threads=use.threads,
                registers=r["registers"], smem=r["smem"], spill=r["spill"],
                warps_per_sm=warps_per_sm(r["registers"], use.threads, r["smem"]),
                loop_instructions=len(loop),
                fma=sum(1 for _, o in loop if o.split(".")[0] in FMA_OPS),
                lds=count(("LDS",)), ldg=count(("LDG",)), sts=count(("STS",)),
                bar=count(("BAR",)), integer=count(INT_OPS), rows=use.rows,
            ))
        missing = set(names) - {r.kernel for r in rows}
        if missing:
            raise RuntimeError(f"no SASS found for {sorted(missing)} in {source}")
    return sorted(rows, key=lambda r: (r.source, r.kernel))


def format_rows(rows: list[Row]) -> str:
    lines = [f"{'kernel':62s} {'regs':>4s} {'thr':>4s} {'warps':>5s} "
             f"{'loop':>5s} {'FMA%':>5s} {'LDS':>4s} {'LDG':>4s} {'STS':>4s} "
             f"{'int':>4s}  goal  used by"]
    for r in rows:
        goal = "ok" if r.meets_goals() else ("-" if not r.main else "BELOW")
        share = f"{100 * r.fma_share:5.0f}" if r.main else "    -"
        lines.append(
            f"{r.kernel:62s} {r.registers:4d} {r.threads:4d} {r.warps_per_sm:5d} "
            f"{r.loop_instructions:5d} {share} {r.lds:4d} {r.ldg:4d} {r.sts:4d} "
            f"{r.integer:4d}  {goal:5s} {len(r.rows)} rows: {r.rows[0]}"
            + (" ..." if len(r.rows) > 1 else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--weight-algorithm", default="auto",
                    help="the weight gradient's algorithm (e.g. 'tiled_regblock': "
                    "the SIMT GEMM that auto ran before the NHWC pipeline)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a main kernel misses a goal")
    args = ap.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"sass_check: cannot run: {reason}", file=sys.stderr)
        return 2
    rows = analyse(auto_kernels(weight_algorithm=args.weight_algorithm), args.arch)
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [dict(asdict(r), fma_share=r.fma_share) for r in rows], indent=1))
    below = [r for r in rows if not r.meets_goals()]
    print(f"{len(rows) - len(below)}/{len(rows)} kernels meet the goals "
          f"(FMA share >= {FMA_SHARE_GOAL:.0%} in the hottest loop, "
          f">= {WARPS_GOAL} warps/SM)")
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
