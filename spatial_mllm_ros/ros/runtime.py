# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Process entry points shared by every node of the package: init, spin, clean shutdown.

rclpy has no intra-process transport, so nodes that share data (camera frames, the model) must live in
one process; :func:`run` spins any number of them together on one multi-threaded executor. Each node
may offer three optional hooks: ``executor_threads`` (how many callbacks of it may block at once) and
``start()`` (called once everything is added, e.g. lifecycle autostart), and ``close()`` (called at exit).
Long-running image nodes also need a bounded heap: see :func:`bound_heap_growth`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

# Threads beyond the nodes' own blocking callbacks: camera callbacks, timers, parameter/lifecycle services.
BASE_EXECUTOR_THREADS = 4
# glibc mallopt() parameter number of M_MMAP_THRESHOLD (malloc.h).
_M_MMAP_THRESHOLD = -3


def bound_heap_growth(threshold_bytes: int = 256 * 1024) -> bool:
    """Serve allocations of ``threshold_bytes`` or more with mmap, so freed image buffers return to the OS.

    Camera messages (~1 MB each at 640x480) are allocated and freed at 30 Hz from several executor
    threads. glibc's dynamic mmap threshold then moves them onto per-thread heaps that fragment: a node
    fed 30 Hz VGA with a question per second grew from 839 to 1239 MB in two minutes (still rising);
    with a fixed threshold it stayed at 647-660 MB. Fixing the threshold (which also disables glibc's
    dynamic adjustment) is what ``MALLOC_MMAP_THRESHOLD_`` in the environment does; when that is set,
    it is left alone. Returns True when the setting was applied (glibc only).
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))


def run(node_factories: Sequence[Callable[[], Node]], args: list[str] | None = None) -> int:
    """Create the nodes, spin them on one MultiThreadedExecutor until shutdown, close them; exit code.

    ``args`` are the process arguments (``sys.argv`` when None), so ``--ros-args -p ...`` and
    ``--params-file`` work. SIGINT/SIGTERM end the spin cleanly.
    """
    bound_heap_growth()
    try:
        rclpy.init(args=sys.argv if args is None else args)
    except Exception as error:  # malformed --ros-args (rcl logs the details)
        print(f"error: cannot start ROS: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    nodes: list[Node] = []
    exit_code = 0
    try:
        nodes = [factory() for factory in node_factories]
        threads = BASE_EXECUTOR_THREADS + sum(int(getattr(node, "executor_threads", 0)) for node in nodes)
        executor = MultiThreadedExecutor(num_threads=threads)
        for node in nodes:
            executor.add_node(node)
        for node in nodes:
            start = getattr(node, "start", None)
            if callable(start):
                start()
        _spin_surviving_callback_errors(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # a node that cannot start: say why, exit non-zero
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        _close_ignoring_interrupts(nodes)
    return exit_code


def _spin_surviving_callback_errors(executor: MultiThreadedExecutor) -> None:
    """``executor.spin()``, except that a callback's exception is logged and the spin goes on.

    The nodes guard every callback they register (:mod:`spatial_mllm_ros.ros.boundary`); this is the
    last line for callbacks that rclpy registers itself: e.g. a lifecycle ``change_state`` request for a
    transition that is invalid in the current state raises inside rclpy's service callback, which
    ``spin()`` would re-raise and so end the process.
    """
    logged: set[str] = set()
    while executor.context.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            if text not in logged and len(logged) < 100:
                logged.add(text)
                print(f"[spatial_mllm_ros] callback failed, node keeps running: {text}", file=sys.stderr)


def _close_ignoring_interrupts(nodes: Sequence[Node]) -> None:
    """Close the nodes and ROS with SIGINT ignored: the shutdown was asked for already.

    ``ros2 launch`` forwards a terminal's Ctrl-C to every process of the group and sends its own
    SIGINT too, so a second one commonly arrives while the first is being handled; it must neither
    interrupt the clean-up with a KeyboardInterrupt traceback nor change the exit code.
    """
    with contextlib.suppress(ValueError):  # not the main thread (tests run nodes in threads)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for node in reversed(nodes):
        try:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        except KeyboardInterrupt:  # raised before SIGINT was ignored (already pending)
            pass
    rclpy.try_shutdown()
    with contextlib.suppress(ValueError):  # try_shutdown restored the handler rclpy replaced
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def parameter_descriptor(
    description: str,
    *,
    read_only: bool = False,
    integer_range: tuple[int, int] | None = None,
    float_range: tuple[float, float] | None = None,
    choices: tuple[str, ...] = (),
) -> ParameterDescriptor:
    """A descriptor with its range; read-only ones say how to change them (every node uses this)."""
    text = description + (f" One of: {', '.join(choices)}." if choices else "")
    if read_only:
        text += " Read-only: change it in the parameter file and restart/reconfigure the node."
    descriptor = ParameterDescriptor(description=text, read_only=read_only)
    if integer_range is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=integer_range[0], to_value=integer_range[1], step=0)
        ]
    if float_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float_range[0], to_value=float_range[1], step=0.0)
        ]
    return descriptor
