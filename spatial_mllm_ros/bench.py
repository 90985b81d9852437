# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark driver: ``spatial-mllm-ros bench [AREA ...]`` (``make bench`` / ``make bench-AREA``).

Each area is a module ``benchmarks/bench_<area>.py`` of the source checkout with
``run(args) -> dict`` returning flat named figures (units in the names) and optionally
``add_arguments(parser)``. The driver prints them as a table and writes
``benchmarks/results/<area>.json`` atomically.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import sys
import time
from pathlib import Path

from spatial_mllm_ros.core.atomic import write_json_atomic

AREAS = ("frames", "model", "engine", "nodes", "reward", "eval")


def _benchmarks_dir() -> Path:
    for candidate in (Path.cwd() / "benchmarks", Path(__file__).resolve().parents[1] / "benchmarks"):
        if (candidate / "bench_frames.py").is_file():
            return candidate
    raise SystemExit("benchmarks/ not found: run from a source checkout of spatial_mllm_ros")


def _load_area(directory: Path, area: str):
    path = directory / f"bench_{area}.py"
    if not path.is_file():
        raise SystemExit(f"no benchmark for area {area!r} ({path} is missing)")
    spec = importlib.util.spec_from_file_location(f"bench_{area}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(directory))
    spec.loader.exec_module(module)
    return module


def format_table(area: str, figures: dict) -> str:
    """Two columns, figure name and value, numbers with sensible precision."""
    def show(value):
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    width = max((len(k) for k in figures), default=10)
    rows = [f"== bench {area}", f"{'figure'.ljust(width)}  value", f"{'-' * width}  -----"]
    rows += [f"{name.ljust(width)}  {show(value)}" for name, value in figures.items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the named areas (all when none) and report each."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros bench", description=__doc__.splitlines()[0])
    parser.add_argument("areas", nargs="*",
                        help=f"areas to run: {', '.join(AREAS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    known, rest = parser.parse_known_args(argv)
    areas = known.areas or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        parser.error(f"unknown area(s) {unknown}; choose from {AREAS}")
    directory = _benchmarks_dir()
    for area in areas:
        module = _load_area(directory, area)
        area_parser = argparse.ArgumentParser(prog=f"bench {area}")
        if hasattr(module, "add_arguments"):
            module.add_arguments(area_parser)
        area_args, _ = area_parser.parse_known_args(rest)
        area_args.quick = known.quick
        started = time.perf_counter()
        figures = dict(module.run(area_args))
        figures["bench_wall_s"] = round(time.perf_counter() - started, 3)
        figures["host"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"
        print(format_table(area, figures), flush=True)
        out = directory / "results" / f"{area}.json"
        write_json_atomic(out, figures, sort_keys=True)
        print(f"-> {out}")
    return 0
