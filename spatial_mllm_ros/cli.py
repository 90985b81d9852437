# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one ``spatial-mllm-ros`` command.

Each sub-command lives in the module that owns the work and parses its own arguments, so that
``spatial-mllm-ros make-scene`` never pays for importing torch.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module:function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spatial_mllm_ros.demo:main", "set up a synthetic scene, answer its questions, label rewards"),
    "eval": ("spatial_mllm_ros.bag.evaluate:main", "evaluate answers over a rosbag2 recording (VSI-Bench)"),
    "score": ("spatial_mllm_ros.bag.score:main", "score predictions with the official VSI-Bench rules"),
    "label-rewards": ("spatial_mllm_ros.reward.label:main", "rewards of LeRobot data/bags -> LeRobot v3"),
    "make-scene": ("spatial_mllm_ros.bag.scene:main", "write a synthetic RGB-D scene bag + questions"),
    "make-tiny-model": ("spatial_mllm_ros.model.tiny:main", "write a small random Spatial-MLLM checkpoint"),
    "bench": ("spatial_mllm_ros.bench:main", "run benchmarks of a source checkout (areas or all)"),
    "export-llm": ("spatial_mllm_ros.model.export_llm:main",
                   "stock Qwen2.5-VL checkpoint + visual graph for TensorRT-LLM / Edge-LLM"),
    "download": ("spatial_mllm_ros.model.hub:main", "download a checkpoint by Hub id org/name[@revision]"),
}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: spatial-mllm-ros COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "spatial-mllm-ros COMMAND --help shows a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the sub-command's own ``main(argv)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"spatial-mllm-ros: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name = SUBCOMMANDS[name][0].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return int(function(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
