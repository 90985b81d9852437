# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The ament-style package checks: lint, license headers, manifest, interfaces, import layering."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys

import pytest
from catkin_pkg.package import parse_package
from conftest import REPO_ROOT

PY_DIRS = ("spatial_mllm_ros", "test", "benchmarks", "launch")
HEADER = (
    "# Copyright 2026 spatial_mllm_ros maintainers\n# SPDX-License-Identifier: Apache-2.0\n"
)


def _python_files():
    for directory in PY_DIRS:
        yield from sorted((REPO_ROOT / directory).rglob("*.py"))
    yield REPO_ROOT / "setup.py"


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which("ruff")
    assert ruff, "ruff is not installed (make test installs it)"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_python_file_has_the_license_header():
    missing = [str(p.relative_to(REPO_ROOT)) for p in _python_files()
               if not p.read_text().startswith(HEADER)]
    assert missing == []


def test_cmake_file_has_the_license_header():
    assert "SPDX-License-Identifier: Apache-2.0" in (REPO_ROOT / "CMakeLists.txt").read_text()


def test_package_xml_is_valid_format_3():
    package = parse_package(str(REPO_ROOT / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert [lic for lic in package.licenses] == ["Apache-2.0"]
    assert package.get_build_type() == "ament_cmake"
    exec_names = {d.name for d in package.exec_depends}
    assert {"rclpy", "lifecycle_msgs", "rosidl_default_runtime"} <= exec_names
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]


@pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint (libxml2-utils) is not installed")
def test_package_xml_is_well_formed_xml():
    subprocess.run(["xmllint", "--noout", str(REPO_ROOT / "package.xml")], check=True)


def test_generated_interfaces_import():
    code = (
        "from spatial_mllm_ros.msg import SpatialAnswer, FrameSelection, TrajectoryReward\n"
        "from spatial_mllm_ros.srv import AskSpatial\n"
        "from spatial_mllm_ros.action import ScoreTrajectory\n"
        "a = SpatialAnswer(answer_kind=SpatialAnswer.KIND_NUMBER, value=1.8, unit='m')\n"
        "assert AskSpatial.Response().answer.error == ''\n"
        "assert ScoreTrajectory.Goal.MODE_DISPLACEMENT == 'displacement'\n"
        "print(a.value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.8"


def test_library_imports_without_rclpy():
    # Block rclpy as if it were not installed: the ROS-free layers must still import.
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"
        "import importlib, pkgutil\n"
        "import spatial_mllm_ros\n"
        "for sub in ('core', 'model', 'engine', 'reward', 'bag'):\n"
        "    try:\n"
        "        mod = importlib.import_module('spatial_mllm_ros.' + sub)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name == 'spatial_mllm_ros.' + sub:\n"
        "            continue\n"
        "        raise\n"
        "    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_only_the_ros_package_imports_rclpy():
    offenders = []
    for path in (REPO_ROOT / "spatial_mllm_ros").rglob("*.py"):
        if path.parent.name == "ros" or "ros" in path.relative_to(REPO_ROOT).parts[1:2]:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
                offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []


def test_ros_executables_agree_between_setup_and_cmake():
    setup_src = (REPO_ROOT / "setup.py").read_text()
    table = ast.literal_eval(re.search(r"ROS_EXECUTABLES = (\{.*?\})", setup_src, re.S).group(1))
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    block = re.search(r"set\(SPATIAL_MLLM_EXECUTABLES(.*?)\)", cmake, re.S).group(1)
    cmake_table = dict(entry.split("=", 1) for entry in re.findall(r'"([^"]+)"', block))
    assert cmake_table == table
    for target in table.values():
        module, function = target.split(":")
        path = REPO_ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{target}: {path} is missing"
        assert f"def {function}(" in path.read_text(), f"{target}: no function {function}"
