# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial_mllm_composed``: the QA node and the reward annotator in one process, one model.

A 4B-parameter model fits a Jetson once, not twice, and rclpy has no intra-process transport, so
robots that want answers *and* trajectory rewards run both nodes here, on one multi-threaded
executor, sharing one ``SpatialQA`` engine and the QA node's frame buffer.

The engine is configured by the QA node's parameters (``model_path``, ``backend``, ``device``,
``dtype``, ``selector``, ``max_frames``, ``max_new_tokens``) and loaded once, when first used: at the
QA node's configure (lifecycle) or at the first reward goal, whichever comes first. Every engine
call goes through the engine's own lock, so a question and a trajectory goal simply take turns.
Parameters of each node are set per node name in a parameter file
(``spatial_mllm_node:`` / ``reward_annotator_node:``).
"""

from __future__ import annotations

import threading
from typing import Any

from spatial_mllm_ros.ros.qa_node import SpatialQANode
from spatial_mllm_ros.ros.reward_node import RewardAnnotatorNode
from spatial_mllm_ros.ros.runtime import run

ENGINE_PARAMETERS = ("model_path", "backend", "device", "dtype", "selector", "max_frames", "max_new_tokens")


class SharedEngine:
    """One ``SpatialQA``, built on first use from a node's parameters, shared by several nodes.

    Attribute access is forwarded to the engine (loading it if needed), so the nodes use it like a
    ``SpatialQA``. ``close()`` frees it once, at process exit.
    """

    def __init__(self) -> None:
        self._settings: dict[str, Any] | None = None
        self._engine: Any | None = None
        self._lock = threading.Lock()
        self._closed = False

    def configure_from(self, node: Any) -> None:
        """Take the engine settings from a node's parameters (the QA node's)."""
        self._settings = {name: node.get_parameter(name).value for name in ENGINE_PARAMETERS}

    def get(self) -> Any:
        """The engine, loaded on the first call."""
        with self._lock:
            if self._engine is None:
                if self._closed:
                    raise RuntimeError("the shared engine is closed")
                if self._settings is None:
                    raise RuntimeError("the shared engine has no settings (configure_from not called)")
                from spatial_mllm_ros.engine import SpatialQA

                s = self._settings
                self._engine = SpatialQA(s["model_path"] or None, backend=s["backend"], device=s["device"],
                                         dtype=s["dtype"], selector=s["selector"], max_frames=s["max_frames"],
                                         max_new_tokens=s["max_new_tokens"])
            return self._engine

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)

    def close(self) -> None:
        """Free the engine (idempotent)."""
        with self._lock:
            engine, self._engine, self._closed = self._engine, None, True
        if engine is not None:
            engine.close()


class ComposedNodes:
    """Builds the two nodes in order, wiring the shared engine and the QA node's frame buffer.

    ``node_kwargs`` go to both nodes (e.g. ``context=`` or ``namespace=``).
    """

    def __init__(self, **node_kwargs: Any) -> None:
        self.node_kwargs = node_kwargs
        self.engine = SharedEngine()
        self.qa_node: SpatialQANode | None = None
        self.reward_node: RewardAnnotatorNode | None = None

    def make_qa_node(self) -> SpatialQANode:
        """The QA node, handed the shared engine (it does not own or close it)."""
        self.qa_node = SpatialQANode(engine=self.engine, **self.node_kwargs)
        self.engine.configure_from(self.qa_node)
        return self.qa_node

    def make_reward_node(self) -> RewardAnnotatorNode:
        """The reward node, on the same engine, reading live frames from the QA node's buffer."""
        node = RewardAnnotatorNode(engine=self.engine, frame_source=self.live_frames, **self.node_kwargs)
        self.reward_node = node
        return node

    def live_frames(self, start: float | None, end: float | None) -> list:
        """Frames of the QA node's buffer (its first camera) in a time window; [] when unconfigured."""
        qa_node = self.qa_node
        buffer = qa_node.frame_buffer
        if buffer is None:
            return []
        return buffer.frames(camera_id=qa_node.cameras[0], start=start, end=end)

    def close(self) -> None:
        """Free the engine after both nodes are closed (called by :func:`run`)."""
        self.engine.close()


def main(args: list[str] | None = None) -> int:
    """``spatial_mllm_composed`` entry point: both nodes, one executor, one engine."""
    composed = ComposedNodes()
    try:
        return run([composed.make_qa_node, composed.make_reward_node], args)
    finally:
        composed.close()


if __name__ == "__main__":
    raise SystemExit(main())
