"""Both compute-sanitizer workloads in one process (run by ``bench/gpu_check.sh``).

``bench/gpu_sanitize_subset.py`` (every conv2d variant and pass) and then
``bench/gpu_sanitize_filter.py`` (the filter kernels), CuPy's memory pool off, so
one sanitizer start covers both; exits 1 if either found a wrong result. Under
``compute-sanitizer --error-exitcode N`` a memory error or race makes the status N.

    PYTHONPATH=. compute-sanitizer --tool memcheck --error-exitcode 99 \\
        python bench/gpu_sanitize_all.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    status = 0
    for name in ("gpu_sanitize_subset", "gpu_sanitize_filter"):
        try:
            rc = importlib.import_module(name).main()
        except Exception as exc:  # report, and still run the other workload
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
            rc = 1
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
