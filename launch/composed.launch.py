# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Start spatial_mllm_composed: the QA node and the reward annotator in one process, one model.

    ros2 launch spatial_mllm_ros composed.launch.py profile:=jetson_orin model_path:=/models/sm-135k

One process holds both lifecycle nodes (rclpy has no intra-process transport: the model and the camera
frames exist once). The profile's ``spatial_mllm_node`` section configures the QA node and the shared
engine; both nodes configure and activate themselves (``autostart``), because launch_ros drives the
lifecycle of one node per process action.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from spatial_mllm_ros.engine.parameters import profile_path

PACKAGE = "spatial_mllm_ros"


def _process(context):
    """The composed process with the profile file and the overrides (both nodes get ``autostart``)."""
    profile = LaunchConfiguration("profile").perform(context)
    profile_file = str(profile_path(profile, f"{FindPackageShare(PACKAGE).perform(context)}/config"))
    overrides = {"autostart": True,
                 "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true"}
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        overrides["model_path"] = model_path
    return [Node(
        package=PACKAGE,
        executable="spatial_mllm_composed",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[profile_file, overrides],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description():
    """Arguments: model_path, profile, namespace, use_sim_time, log_level."""
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="",
                              description="Spatial-MLLM checkpoint directory (empty: the profile's)"),
        DeclareLaunchArgument("profile", default_value="cpu",
                              description="config/<profile>.yaml: jetson_orin, desktop_cuda or cpu"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of both nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
        OpaqueFunction(function=_process),
    ])
