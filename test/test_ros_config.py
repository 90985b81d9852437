# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Robot profiles and launch files: every configured parameter is declared, every executable exists.

A parameter in a profile that no node declares is silently ignored by ROS 2, so a typo there would go
unnoticed on a robot; this test loads each ``config/*.yaml`` into the node it configures (through
``--params-file``, as a launch file does) and checks every key was declared with the file's value.
"""

from __future__ import annotations

import ast
import importlib
import math
import re

import pytest
import rclpy
import yaml
from conftest import REPO_ROOT
from rclpy.context import Context

CONFIGS = sorted((REPO_ROOT / "config").glob("*.yaml"))
LAUNCH_FILES = sorted((REPO_ROOT / "launch").glob("*.launch.py"))
# node name in a profile -> the class that declares its parameters
NODE_CLASSES = {
    "spatial_mllm_node": "spatial_mllm_ros.ros.qa_node:SpatialQANode",
    "reward_annotator_node": "spatial_mllm_ros.ros.reward_node:RewardAnnotatorNode",
}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _node_class(node_key: str):
    name = node_key.rsplit("/", 1)[-1]
    assert name in NODE_CLASSES, f"profile configures an unknown node {node_key!r}"
    module, cls = NODE_CLASSES[name].split(":")
    return name, getattr(importlib.import_module(module), cls)


def test_the_three_profiles_exist():
    assert {p.stem for p in CONFIGS} >= {"jetson_orin", "desktop_cuda", "cpu"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_profile_parameter_is_declared_by_its_node(config):
    text = config.read_text()
    assert text.lstrip().startswith("#"), "a profile starts with comments saying what it is for"
    document = yaml.safe_load(text)
    for node_key, section in document.items():
        name, node_class = _node_class(node_key)
        expected = _flatten(section["ros__parameters"])
        context = Context()
        rclpy.init(context=context, args=["--ros-args", "--params-file", str(config)])
        try:
            node = node_class(name, context=context)
            try:
                undeclared = sorted(key for key in expected if not node.has_parameter(key))
                assert undeclared == [], f"{config.name}: {name} does not declare {undeclared}"
                for key, value in expected.items():
                    actual = node.get_parameter(key).value
                    if isinstance(value, float) and math.isnan(value):
                        assert math.isnan(actual), key
                    elif isinstance(value, list):
                        assert list(actual) == value, key
                    else:
                        assert actual == value, f"{config.name}: {key} = {actual!r}, file says {value!r}"
            finally:
                close = getattr(node, "close", None)
                if callable(close):
                    close()
                node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)


def test_a_profile_with_a_bad_value_is_refused_at_start(tmp_path):
    from spatial_mllm_ros.ros.qa_node import SpatialQANode

    bad = tmp_path / "bad.yaml"
    profile = (REPO_ROOT / "config" / "cpu.yaml").read_text()
    bad.write_text(profile.replace("backend: torch", "backend: torchy"))
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(bad)])
    try:
        with pytest.raises(Exception, match="torchy"):
            SpatialQANode(context=context)
    finally:
        rclpy.try_shutdown(context=context)


def _setup_executables() -> set[str]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ROS_EXECUTABLES":
            return set(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no ROS_EXECUTABLES")


def _keyword_strings(tree: ast.AST, keyword: str) -> list[str]:
    return [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
            if kw.arg == keyword and isinstance(kw.value, ast.Constant)]


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_name_existing_executables_and_profiles(launch_file):
    source = launch_file.read_text()
    tree = ast.parse(source)
    executables = _keyword_strings(tree, "executable")
    assert executables, f"{launch_file.name} starts no node"
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    for executable in executables:
        assert executable in _setup_executables(), executable
        assert f'"{executable}=' in cmake, f"{executable} is not installed by CMakeLists.txt"
        module = dict(item.split("=") for item in re.findall(r'"(\w+=[\w.:]+)"', cmake))[executable]
        module_name, function = module.split(":")
        assert callable(getattr(importlib.import_module(module_name), function))
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    for package in _keyword_strings(tree, "package"):
        assert package == "spatial_mllm_ros"
    for default in re.findall(r'"profile", default_value="(\w+)"', source):
        assert (REPO_ROOT / "config" / f"{default}.yaml").is_file(), default
    for included in re.findall(r'"(\w+\.launch\.py)"', source):
        assert (REPO_ROOT / "launch" / included).is_file(), included


def test_configure_with_a_missing_model_fails_with_the_reason_and_the_node_stays_usable(tmp_path):
    from rclpy.lifecycle import TransitionCallbackReturn

    from spatial_mllm_ros.ros.qa_node import SpatialQANode

    context = Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(REPO_ROOT / "config" / "cpu.yaml"),
                                      "-p", f"model_path:={tmp_path / 'missing'}"])
    try:
        node = SpatialQANode(context=context)
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert node.lifecycle_state == "unconfigured"
            assert node.frame_buffer is None
            assert "missing" in node._configure_error and "model_path=" in node._configure_error
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_node_processes_fix_the_glibc_mmap_threshold(monkeypatch):
    from spatial_mllm_ros.ros.runtime import bound_heap_growth

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert bound_heap_growth() is True  # glibc: applied (see the soak figures in bench_nodes)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert bound_heap_growth() is False  # the user's own setting is left alone


def test_integers_are_accepted_for_floating_point_parameters(tmp_path):
    from spatial_mllm_ros.ros.qa_node import SpatialQANode

    profile = tmp_path / "ints.yaml"
    text = (REPO_ROOT / "config" / "cpu.yaml").read_text()
    text = text.replace("max_megabytes: 512.0", "max_megabytes: 512")
    profile.write_text(text.replace("pose_offset: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]",
                                    "pose_offset: [0, 0, 0, 0, 0, 0, 1]"))
    context = Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(profile),
                                      "-p", "request_timeout_s:=30"])
    try:
        node = SpatialQANode(context=context)
        try:
            assert node.get_parameter("buffer.max_megabytes").value == 512.0
            assert node.get_parameter("request_timeout_s").value == 30.0
            assert node.get_parameter("camera.pose_offset").value == [0.0] * 6 + [1.0]
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
