# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Start reward_annotator_node (ScoreTrajectory action) and bring it up through its lifecycle.

    ros2 launch spatial_mllm_ros reward_annotator.launch.py model_path:=/models/sm-135k
    ros2 action send_goal /reward_annotator_node/score_trajectory spatial_mllm_ros/action/ScoreTrajectory \
        "{instruction: 'push the red box', mode: progress, bag_path: /data/episode_0}" --feedback

The engine parameters come from the profile (``config/<profile>.yaml``, the same file as the QA node's:
its ``/**/spatial_mllm_node`` section is read for the engine rows) plus the launch arguments. The node
is configured (model loaded) and, once ``inactive``, activated: the standard launch_ros way.
"""

from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from spatial_mllm_ros.engine.parameters import ENGINE_PARAMETERS, load_profile

PACKAGE = "spatial_mllm_ros"


def _lifecycle_event(node, transition_id):
    event = ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
    return EmitEvent(event=event)


def _node_and_transitions(context):
    """The node with the profile's engine parameters and the launch overrides, then its transitions."""
    config_dir = f"{FindPackageShare(PACKAGE).perform(context)}/config"
    profile = load_profile(LaunchConfiguration("profile").perform(context), config_dir=config_dir)
    names = {spec.name for spec in ENGINE_PARAMETERS}
    parameters = {name: item for name, item in profile.items() if name in names}
    parameters["use_sim_time"] = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        parameters["model_path"] = model_path
    node = LifecycleNode(
        package=PACKAGE,
        executable="reward_annotator_node",
        name="reward_annotator_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[parameters],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    return [
        node,
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, goal_state="inactive",
            entities=[_lifecycle_event(node, Transition.TRANSITION_ACTIVATE)])),
        _lifecycle_event(node, Transition.TRANSITION_CONFIGURE),
    ]


def generate_launch_description():
    """Arguments: model_path, profile, namespace, use_sim_time, log_level."""
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="",
                              description="Spatial-MLLM checkpoint directory (empty: the profile's)"),
        DeclareLaunchArgument("profile", default_value="cpu",
                              description="config/<profile>.yaml: jetson_orin, desktop_cuda or cpu"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
        OpaqueFunction(function=_node_and_transitions),
    ])
