# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Replay a rosbag2 recording into spatial_mllm_node on simulated time.

    ros2 launch spatial_mllm_ros bag_replay.launch.py bag:=scene/bag model_path:=build/tiny_model rate:=2.0

Includes ``spatial_mllm.launch.py`` with ``use_sim_time:=true`` and starts ``bag_player`` (publishes the
bag and /clock; no ``ros2 bag`` needed) when the node reports the lifecycle state ``active`` (model
loaded and prepared, cameras subscribed), however long loading takes: no frame goes out before the node
listens. Buffered frames carry the recording's stamps, so questions can name time windows of it.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, RegisterEventHandler
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "spatial_mllm_ros"


def generate_launch_description():
    """Arguments: bag, rate, loop, start_delay_s, model_path, profile, camera_namespace."""
    qa_launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare(PACKAGE), "launch",
                                                            "spatial_mllm.launch.py"])),
        launch_arguments={
            "model_path": LaunchConfiguration("model_path"),
            "profile": LaunchConfiguration("profile"),
            "camera_namespace": LaunchConfiguration("camera_namespace"),
            "use_sim_time": "true",
        }.items(),
    )
    player = Node(
        package=PACKAGE,
        executable="bag_player",
        name="bag_player",
        output="screen",
        parameters=[{
            "bag": ParameterValue(LaunchConfiguration("bag"), value_type=str),
            "rate": ParameterValue(LaunchConfiguration("rate"), value_type=float),
            "loop": ParameterValue(LaunchConfiguration("loop"), value_type=bool),
            "start_delay_s": ParameterValue(LaunchConfiguration("start_delay_s"), value_type=float),
        }],
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 directory or .mcap file to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback speed factor; 0 = max"),
        DeclareLaunchArgument("loop", default_value="false", description="Replay the bag in a loop"),
        DeclareLaunchArgument("start_delay_s", default_value="2.0",
                              description="Seconds before the first message (discovery)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="Spatial-MLLM checkpoint directory"),
        DeclareLaunchArgument("profile", default_value="cpu", description="config/<profile>.yaml"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera",
                              description="Namespace of the bag's camera topics"),
        qa_launch,
        # The only lifecycle node here is spatial_mllm_node: its first transition to "active" starts the
        # player (once; a later re-activation does not replay the bag).
        RegisterEventHandler(OnStateTransition(goal_state="active", entities=[player], handle_once=True)),
    ])
