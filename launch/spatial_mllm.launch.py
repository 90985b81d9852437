# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Start spatial_mllm_node with a robot profile and bring it up through its lifecycle.

    ros2 launch spatial_mllm_ros spatial_mllm.launch.py profile:=jetson_orin model_path:=/models/sm-135k
    ros2 launch spatial_mllm_ros spatial_mllm.launch.py profile:=cpu model_path:=build/tiny_model
        camera_namespace:=/camera use_sim_time:=true        (one command line)

The profile is ``config/<profile>.yaml`` of the installed package (an unknown name is an error that
lists the profiles); ``model_path`` and ``camera_namespace`` override it when given. With
``autostart:=true`` (default) the launch file emits the lifecycle ``configure`` transition, then
``activate`` once the node reports ``inactive`` (model loaded and engine prepared), the standard
launch_ros way.
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
from spatial_mllm_ros.engine.parameters import profile_path

PACKAGE = "spatial_mllm_ros"


def _lifecycle_event(node, transition_id):
    event = ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
    return EmitEvent(event=event)


def _node_and_transitions(context):
    """Build the node from the evaluated arguments (optional overrides are only set when given)."""
    profile = LaunchConfiguration("profile").perform(context)
    profile_file = str(profile_path(profile, f"{FindPackageShare(PACKAGE).perform(context)}/config"))
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true"}
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        overrides["model_path"] = model_path
    camera_namespace = LaunchConfiguration("camera_namespace").perform(context)
    if camera_namespace:
        overrides["camera.namespace"] = camera_namespace
    node = LifecycleNode(
        package=PACKAGE,
        executable="spatial_mllm_node",
        name="spatial_mllm_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[profile_file, overrides],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    actions = [node]
    if LaunchConfiguration("autostart").perform(context).lower() == "true":
        actions += [
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, goal_state="inactive",
                entities=[_lifecycle_event(node, Transition.TRANSITION_ACTIVATE)])),
            _lifecycle_event(node, Transition.TRANSITION_CONFIGURE),
        ]
    return actions


def generate_launch_description():
    """Arguments: model_path, profile, namespace, camera_namespace, use_sim_time, autostart, log_level."""
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="",
                              description="Spatial-MLLM checkpoint directory (empty: the profile's)"),
        DeclareLaunchArgument("profile", default_value="cpu",
                              description="config/<profile>.yaml: jetson_orin, desktop_cuda or cpu"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("camera_namespace", default_value="",
                              description="Namespace of the camera topics, e.g. /camera "
                                          "(empty: the profile's)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the lifecycle node automatically"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
        OpaqueFunction(function=_node_and_transitions),
    ])
