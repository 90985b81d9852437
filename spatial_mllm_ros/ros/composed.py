# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial_mllm_composed``: the QA node and the reward annotator in one process, one model.

A 4B-parameter model fits a Jetson once, not twice, and rclpy has no intra-process transport, so
robots that want answers *and* trajectory rewards run both lifecycle nodes here, on one multi-threaded
executor, sharing one engine and the QA node's frame buffer (tf poses resolved through its ingest).

The engine is built once, by the same factory as everywhere (all engine parameters, read from the QA
node: ``spatial_mllm_node:`` in a parameter file), at whichever configure comes first; the QA node
prepares it at its shapes. A bad ``model_path`` fails that configure with the reason logged. Every
engine call takes the engine's own lock, so a question and a trajectory goal simply take turns.
"""

from __future__ import annotations

import threading
from typing import Any

from spatial_mllm_ros.ros.engine_params import build_engine
from spatial_mllm_ros.ros.qa_node import SpatialQANode
from spatial_mllm_ros.ros.reward_node import RewardAnnotatorNode
from spatial_mllm_ros.ros.runtime import run


class SharedEngine:
    """The engine of the process: built on the first :meth:`get` from the QA node's parameters."""

    def __init__(self) -> None:
        self._source: Any | None = None
        self._engine: Any | None = None
        self._lock = threading.Lock()
        self._closed = False

    def take_parameters_from(self, node: Any) -> None:
        """The node whose engine parameters build the engine (the QA node)."""
        self._source = node

    def get(self) -> Any:
        """The engine, built on the first call (EngineConfigError naming the parameter when it cannot be)."""
        with self._lock:
            if self._engine is None:
                if self._closed:
                    raise RuntimeError("the shared engine is closed")
                if self._source is None:
                    raise RuntimeError(
                        "the shared engine has no parameters (take_parameters_from not called)"
                    )
                self._engine = build_engine(self._source)
            return self._engine

    @property
    def built(self) -> Any | None:
        """The engine when it exists, else None (never builds)."""
        return self._engine

    def close(self) -> None:
        """Free the engine (idempotent)."""
        with self._lock:
            engine, self._engine, self._closed = self._engine, None, True
        if engine is not None:
            engine.close()


class ComposedNodes:
    """Builds the two nodes in order, wiring the shared engine and the QA node's frames.

    ``node_kwargs`` go to both nodes (e.g. ``context=`` or ``namespace=``).
    """

    def __init__(self, **node_kwargs: Any) -> None:
        self.node_kwargs = node_kwargs
        self.engine = SharedEngine()
        self.qa_node: SpatialQANode | None = None
        self.reward_node: RewardAnnotatorNode | None = None

    def make_qa_node(self) -> SpatialQANode:
        """The QA node, on the shared engine (it prepares it but does not close it)."""
        self.qa_node = SpatialQANode(engine_provider=self.engine.get, **self.node_kwargs)
        self.engine.take_parameters_from(self.qa_node)
        return self.qa_node

    def make_reward_node(self) -> RewardAnnotatorNode:
        """The reward node, on the same engine, reading live frames from the QA node."""
        self.reward_node = RewardAnnotatorNode(
            engine_provider=self.engine.get, frame_source=self.live_frames, **self.node_kwargs
        )
        return self.reward_node

    def live_frames(self, start: float | None, end: float | None) -> list:
        """Frames of the QA node's first camera in a time window (tf poses resolved); [] when unconfigured."""
        qa_node = self.qa_node
        ingest = qa_node.camera_ingest if qa_node is not None else None
        if ingest is None:
            return []
        return ingest.frames(start=start, end=end, camera=qa_node.cameras[0])

    def close(self) -> None:
        """Free the engine after both nodes are closed (called after :func:`run`)."""
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
