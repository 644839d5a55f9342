"""Run every benchmark (``make bench``): each prints its figures as ratios to a baseline.

Benchmarks are never asserted on in tests; their numbers go into issue notes and docs.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run ``bench_*.py`` in this folder (or those named on the command line) in turn."""
    wanted = set(sys.argv[1:])
    for path in sorted(HERE.glob("bench_*.py")):
        if wanted and path.stem not in wanted:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n### {path.stem}\n", flush=True)
        started = time.perf_counter()
        module.main()
        print(f"\n({path.stem} took {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
