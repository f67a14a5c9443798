"""Redraw the ratio chart of ``python -m gpuconv bench`` from saved JSON rows.

Usage: ``python bench/plot.py OUT.png RESULTS.json [MORE.json ...]``
(needs matplotlib).
"""

from __future__ import annotations

import sys

from gpuconv._bench import check_plot_available, plot_rows, read_json_rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    why = check_plot_available()
    if why is not None:
        print(why, file=sys.stderr)
        return 2
    rows = read_json_rows(argv[1:])
    plot_rows(rows, argv[0])
    print(f"wrote {argv[0]} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
