# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""What the ROS layer costs on top of the engine, measured over real DDS with the tiny model.

* service round trip: ``~/ask`` from another process vs ``SpatialQA.ask`` called directly on the same
  frames (same thread count, visual-feature cache on in both), median ms and the difference;
* ingest: 2 cameras x 30 Hz x 640x480 rgb8 published while questions keep the worker busy; frames the
  node itself dropped (malformed, bad stamps, ...) must be 0; transport losses are reported apart;
* ingest with the QoS the profiles ship (``cpu``: reliable depth 10, ``jetson_orin``: best effort depth
  15), not only the tuned reliable depth-30 subscription;
* configure with the engine built: ``backend:=onnxruntime`` prepared at configure for ``max_frames``
  frames of 640x480 (ONNX export, then loaded from disk on a second start), and the first question's
  latency against the later ones' (feature cache off, so each question encodes its frames);
* fuzz: generated malformed messages (``test/ros_fuzz.py``) on every camera input and ``~/question``:
  sent / counted by the node / crashes / RSS growth;
* ``--soak-minutes N`` (not run by default): 30 Hz input and a question per second for N minutes;
  RSS growth of the node process (from the end of the first minute, feature cache bounded at 8 MB so
  that it is full by then) and answered/rejected counts.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Its own namespace: a node of another test on the same domain id can never answer for it.
NAMESPACE = f"/bench_nodes_{os.getpid()}"
NODE = f"{NAMESPACE}/spatial_mllm_node"
QUESTION = "How far is the chair from the table?"
SMALL = (120, 160)  # frames for the round-trip comparison
VGA = (480, 640)
SOAK_CACHE_MB = 8
# Camera subscription history: 1 s at 30 Hz absorbs executor stalls (depth 10 lost 16 of 600 frames here).
INGEST_QOS_DEPTH = 30
# Domain ids whose DDS ports stay out of Linux's ephemeral port range: 1..101, 215..232.
SAFE_DOMAIN_IDS = (*range(1, 102), *range(215, 233))


def add_arguments(parser) -> None:
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=0.0,
        help="also run the soak test for this many minutes (30 Hz input, 1 question/s)",
    )
    parser.add_argument("--ingest-seconds", type=float, default=10.0, help="length of the ingest run")
    parser.add_argument("--round-trips", type=int, default=30, help="questions per round-trip series")
    parser.add_argument("--model", default="", help="checkpoint directory (default: a tiny random one)")


def _tiny_model(args) -> Path:
    if args.model:
        return Path(args.model)
    target = REPO_ROOT / "build" / "test_models" / "ros_tiny_seed0"
    if not (target / "config.json").is_file():
        from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".ros_tiny_"))
        make_tiny_checkpoint(staging, preset="tiny", seed=0)
        os.replace(staging, target)
    return target


class _Node:
    """spatial_mllm_node as a subprocess on its own domain."""

    def __init__(
        self, domain_id: int, params: dict[str, str], extra_env: dict[str, str] | None = None
    ) -> None:
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_LOG_DIR=str(REPO_ROOT / "build" / "ros_logs"),
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **(extra_env or {}),
        )
        args = [
            "--params-file",
            str(REPO_ROOT / "config" / "cpu.yaml"),
            "-r",
            f"__ns:={NAMESPACE}",
            "-p",
            "autostart:=true",
        ]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        self.log = tempfile.NamedTemporaryFile(prefix="bench_nodes_", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spatial_mllm_ros.ros.qa_node", "--ros-args", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


class _Client:
    """Publishers, the ~/ask client and a /diagnostics listener in this process."""

    def __init__(self, domain_id: int, cameras: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import GetState
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from spatial_mllm_ros.srv import AskSpatial

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("bench_nodes_client", context=self.context)
        # Reliable (as config/cpu.yaml): best-effort 640x480 images lose UDP fragments on a loaded machine.
        self.images = {c: self.node.create_publisher(Image, f"/{c}/color/image_raw", 10) for c in cameras}
        self.ask_client = self.node.create_client(AskSpatial, f"{NODE}/ask")
        self.state_client = self.node.create_client(GetState, f"{NODE}/get_state")
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down at the end
            return

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NODE}:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def _wait(self, future, timeout: float):
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError("no response")
            time.sleep(0.0005)
        return future.result()

    def wait_active(self, node: _Node, timeout: float = 300.0) -> None:
        from lifecycle_msgs.srv import GetState

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"node exited: {Path(node.log.name).read_text()[-2000:]}")
            if self.state_client.wait_for_service(timeout_sec=1.0):
                try:  # no answer while the node is still configuring (loading the model)
                    state = self._wait(
                        self.state_client.call_async(GetState.Request()), 10.0
                    ).current_state.label
                except TimeoutError:
                    continue
                if state == "active":
                    return
            time.sleep(0.2)
        raise TimeoutError("node never became active")

    def ask(
        self,
        question: str = QUESTION,
        max_frames: int = 0,
        timeout: float = 300.0,
        window: tuple[float, float] | None = None,
    ):
        from spatial_mllm_ros.srv import AskSpatial

        from spatial_mllm_ros.ros.conversions import sec_to_stamp

        request = AskSpatial.Request(question=question, max_frames=max_frames)
        if window is not None:
            request.window_start, request.window_end = sec_to_stamp(window[0]), sec_to_stamp(window[1])
        return self._wait(self.ask_client.call_async(request), timeout).answer

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(count)]


def _publish_frames(client: _Client, camera: str, images: list[np.ndarray], stamps: list[float]) -> None:
    from spatial_mllm_ros.ros.conversions import rgb_to_image

    for image, stamp in zip(images, stamps, strict=True):
        client.images[camera].publish(rgb_to_image(image, stamp=stamp, frame_id=f"{camera}_optical"))
        time.sleep(0.02)


def _round_trip(args, model: Path) -> dict:
    """Direct ``SpatialQA.ask`` and ``~/ask`` on the same frames, alternated call by call (A/B)."""
    # rclpy before torch, in the node's import order: the shared-library load order changed the direct
    # timings here by ~30%.
    import rclpy.lifecycle  # noqa: F401
    import torch

    from spatial_mllm_ros.core.frames import Frame
    from spatial_mllm_ros.engine import SpatialQA

    torch.set_num_threads(1)  # the node process runs with OMP_NUM_THREADS=1 too
    repetitions = 8 if args.quick else args.round_trips
    images = _frames(4, SMALL)
    stamps = [10.0 + 0.1 * i for i in range(len(images))]
    settings = {"selector": "uniform", "max_frames": 4, "max_new_tokens": 4}
    engine = SpatialQA(model, **settings)
    frames = [Frame(stamp=s, camera_id="camera", rgb=im) for s, im in zip(stamps, images, strict=True)]
    domain_id = random.SystemRandom().choice(SAFE_DOMAIN_IDS)
    node = _Node(
        domain_id,
        {
            "model_path": str(model),
            "camera.use_depth": "false",
            "camera.pose_source": "none",
            **{k: str(v) for k, v in settings.items()},
        },
    )
    client = _Client(domain_id, ["camera"])
    direct, service, engine_reported, no_inference = [], [], [], []
    try:
        client.wait_active(node)
        while not client.images["camera"].get_subscription_count():
            time.sleep(0.05)
        _publish_frames(client, "camera", images, stamps)
        while int(client.diagnostics.get("received_image", "0")) < len(images):
            time.sleep(0.05)
        engine.ask(frames, QUESTION)  # both warm, both with the visual features cached
        client.ask()
        for _ in range(repetitions):
            started = time.perf_counter()
            answer = engine.ask(frames, QUESTION)
            direct.append((time.perf_counter() - started) * 1e3)
            assert not answer.error, answer.error
            started = time.perf_counter()
            reply = client.ask()
            service.append((time.perf_counter() - started) * 1e3)
            assert not reply.error, reply.error
            assert len(reply.frame_stamps) == len(answer.frame_stamps)
            engine_reported.append(reply.selection_ms + reply.encode_ms + reply.generate_ms)
            # The whole ROS path (DDS both ways, queue, worker, buffer query) without inference: a window
            # with no frames is answered by the worker with a rejection.
            started = time.perf_counter()
            reply = client.ask(window=(1000.0, 1001.0))
            no_inference.append((time.perf_counter() - started) * 1e3)
            assert "no camera frames" in reply.error, reply.error
    finally:
        client.close()
        node.stop()
        engine.close()
    direct_ms, service_ms = statistics.median(direct), statistics.median(service)
    return {
        "direct_ask_ms_median": round(direct_ms, 2),
        "service_roundtrip_ms_median": round(service_ms, 2),
        "service_overhead_ms_median": round(
            statistics.median(s - d for s, d in zip(service, direct, strict=True)), 2
        ),
        "service_minus_engine_stages_ms_median": round(
            statistics.median(s - e for s, e in zip(service, engine_reported, strict=True)), 2
        ),
        "service_roundtrip_without_inference_ms_median": round(statistics.median(no_inference), 2),
        "round_trip_pairs": repetitions,
    }


def _stream(
    client: _Client, cameras: list[str], seconds: float, rate_hz: float, stop: threading.Event, counts: dict
) -> None:
    """Publish every camera at ``rate_hz`` with fresh stamps (messages pre-built, stamps updated)."""
    from spatial_mllm_ros.ros.conversions import rgb_to_image, sec_to_stamp

    messages = {
        c: [rgb_to_image(im, frame_id=f"{c}_optical") for im in _frames(3, VGA, seed=i)]
        for i, c in enumerate(cameras)
    }
    period = 1.0 / rate_hz
    started = time.monotonic()
    tick = 0
    while not stop.is_set() and time.monotonic() - started < seconds:
        stamp = sec_to_stamp(100.0 + tick * period)
        for camera in cameras:
            msg = messages[camera][tick % 3]
            msg.header.stamp = stamp
            client.images[camera].publish(msg)
            counts[camera] = counts.get(camera, 0) + 1
        tick += 1
        delay = started + tick * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    counts["seconds"] = time.monotonic() - started


def _node_drops(diagnostics: dict[str, str]) -> int:
    return sum(
        int(v) for k, v in diagnostics.items() if k.startswith("dropped_image_") or k == "malformed_image"
    )


def _ingest(
    args,
    model: Path,
    seconds: float,
    question_period_s: float,
    soak: bool = False,
    qos: tuple[str, int] = ("reliable", INGEST_QOS_DEPTH),
    prefix: str = "",
) -> dict:
    cameras = ["cam0"] if soak else ["cam0", "cam1"]
    params = {
        "model_path": str(model),
        "cameras": "[" + ", ".join(cameras) + "]",
        "max_frames": "4",
        "max_pixels": str(128 * 28 * 28),
        "max_new_tokens": "4",
        "selector": "uniform",
        "queue_size": "2",
        "qos.images.depth": str(qos[1]),
        "qos.images.reliability": qos[0],
        "diagnostics_period_s": "0.5",
    }
    if soak:
        # The visual-feature cache grows by design (LRU, bounded in bytes) as every question sees new
        # frames; a small bound lets it fill within the first minute so that RSS growth measures leaks.
        params["feature_cache_megabytes"] = str(SOAK_CACHE_MB)
    for camera in cameras:
        params.update(
            {
                f"{camera}.namespace": f"/{camera}",
                f"{camera}.use_depth": "false",
                f"{camera}.pose_source": "none",
            }
        )
    domain_id = random.SystemRandom().choice(SAFE_DOMAIN_IDS)
    node = _Node(domain_id, params)
    client = _Client(domain_id, cameras)
    counts: dict = {}
    answered = rejected = 0
    reasons: dict[str, str] = {}
    rss_trace: list[int] = []  # MB every 30 s (soak)
    rss_start = rss_end = 0
    try:
        client.wait_active(node)
        while not all(p.get_subscription_count() for p in client.images.values()):
            time.sleep(0.05)
        stop = threading.Event()
        publisher = threading.Thread(target=_stream, args=(client, cameras, seconds, 30.0, stop, counts))
        publisher.start()
        started = time.monotonic()
        while int(client.diagnostics.get("buffer_frames", "0")) == 0 and time.monotonic() - started < 10.0:
            time.sleep(0.02)  # questions start once the first frames are buffered
        while publisher.is_alive():
            asked = time.monotonic()
            answer = client.ask(f"{QUESTION} ({answered + rejected})")
            if answer.error:
                rejected += 1
                reasons.setdefault(answer.error.split(":")[0][:60], answer.error[:200])
            else:
                answered += 1
            if soak and not rss_start and time.monotonic() - started > 60.0:
                rss_start = node.rss_bytes()
            if soak and time.monotonic() - started >= 30.0 * len(rss_trace):
                rss_trace.append(round(node.rss_bytes() / 2**20))
            time.sleep(max(0.0, question_period_s - (time.monotonic() - asked)))
        publisher.join()
        rss_end = node.rss_bytes()
        time.sleep(1.5)  # last diagnostics
        diagnostics = dict(client.diagnostics)
    finally:
        client.close()
        node.stop()
    published = sum(counts.get(c, 0) for c in cameras)
    received = int(diagnostics.get("received_image", "0"))
    prefix = prefix or ("soak" if soak else "ingest")
    figures = {
        f"{prefix}_cameras": len(cameras),
        f"{prefix}_qos": qos[0],
        f"{prefix}_qos_history_depth": qos[1],
        f"{prefix}_seconds": round(counts.get("seconds", 0.0), 1),
        f"{prefix}_images_published": published,
        f"{prefix}_images_received_by_node": received,
        f"{prefix}_images_dropped_by_node": _node_drops(diagnostics),
        f"{prefix}_images_not_received": published - received,  # DDS/reader history, not the node
        f"{prefix}_questions_answered": answered,
        f"{prefix}_questions_rejected": rejected,
        f"{prefix}_rejection_reasons": "; ".join(reasons) or "-",
    }
    if soak:
        figures["soak_feature_cache_bound_mb"] = SOAK_CACHE_MB
        figures["soak_rss_start_mb"] = round(rss_start / 2**20, 1)
        figures["soak_rss_end_mb"] = round(rss_end / 2**20, 1)
        figures["soak_rss_every_30s_mb"] = " ".join(map(str, rss_trace))
        figures["soak_rss_growth_pct"] = (
            round(100.0 * (rss_end - rss_start) / rss_start, 2) if rss_start else float("nan")
        )
    return figures


def _profile_qos(profile: str) -> tuple[str, int]:
    import yaml

    document = yaml.safe_load((REPO_ROOT / "config" / f"{profile}.yaml").read_text())
    images = next(iter(document.values()))["ros__parameters"]["qos"]["images"]
    return images["reliability"], int(images["depth"])


def _configure(args, model: Path) -> dict:
    """Configure with the ONNX engine built (then loaded), and first vs later question latency."""
    height, width = VGA
    params = {
        "model_path": str(model),
        "backend": "onnxruntime",
        "max_frames": "4",
        "max_new_tokens": "4",
        "max_pixels": str(128 * 28 * 28),
        "selector": "uniform",
        "feature_cache_megabytes": "0",
        "input_width": str(width),
        "input_height": str(height),
        "camera.use_depth": "false",
        "camera.pose_source": "none",
    }
    later = 3 if args.quick else 8
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_nodes_cache_") as cache:
        for run_name in ("built", "loaded"):
            domain_id = random.SystemRandom().choice(SAFE_DOMAIN_IDS)
            started = time.monotonic()
            node = _Node(domain_id, params, extra_env={"XDG_CACHE_HOME": cache})
            client = _Client(domain_id, ["camera"])
            try:
                client.wait_active(node)
                figures[f"configure_onnx_{run_name}_to_active_s"] = round(time.monotonic() - started, 2)
                log = node.output()
                figures[f"configure_onnx_{run_name}_s"] = float(log.split("configured in ")[1].split(" s")[0])
                figures[f"configure_onnx_{run_name}_exports"] = int(
                    log.split(" exported)")[0].rsplit("(", 1)[1]
                )
                if run_name == "loaded":
                    break
                while not client.images["camera"].get_subscription_count():
                    time.sleep(0.05)
                _publish_frames(client, "camera", _frames(4, VGA), [10.0 + 0.1 * i for i in range(4)])
                while int(client.diagnostics.get("accepted_image", "0")) < 4:
                    time.sleep(0.05)
                latencies = []
                for i in range(1 + later):
                    asked = time.perf_counter()
                    answer = client.ask(f"{QUESTION} ({i})")
                    latencies.append((time.perf_counter() - asked) * 1e3)
                    assert not answer.error, answer.error
                first, rest = latencies[0], statistics.median(latencies[1:])
                figures.update(
                    first_question_ms=round(first, 1),
                    later_questions_ms_median=round(rest, 1),
                    first_to_later_latency_ratio=round(first / rest, 2),
                    onnx_graphs_after_questions=len(list(Path(cache).rglob("*.onnx"))),
                )
            finally:
                client.close()
                node.stop()
    return figures


def _publish_generated(client: _Client, publisher, strategy, counter: str, count: int) -> int:
    """Publish ``count`` messages drawn from ``strategy`` (derandomized), never > 90 ahead of the node."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = int(client.diagnostics.get(counter, "0"))
    published = [0]

    @settings(
        max_examples=count // 50,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=50, max_size=50))
    def publish(batch):
        for msg in batch:
            publisher.publish(msg)
        published[0] += len(batch)
        deadline = time.monotonic() + 60.0
        while (
            base + published[0] - int(client.diagnostics.get(counter, "0")) > 90
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)

    publish()
    return published[0]


def _fuzz(args, model: Path) -> dict:
    """Generated malformed messages on every camera input and ~/question: sent, counted, crashes, RSS."""
    sys.path.insert(0, str(REPO_ROOT / "test"))
    from geometry_msgs.msg import PoseStamped
    from ros_fuzz import camera_infos, compressed_images, pose_stampeds, question_texts, raw_images
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import String

    per_input = 200 if args.quick else 1000
    params = {
        "model_path": str(model),
        "max_frames": "4",
        "max_new_tokens": "1",
        "selector": "uniform",
        "warmup": "false",
        "qos.images.depth": "1000",
        "cameras": "[camera, wrist]",
        "wrist.namespace": "/wrist",
        "wrist.image_transport": "compressed",
        "wrist.use_depth": "false",
        "wrist.pose_source": "none",
        "diagnostics_period_s": "0.25",
    }
    inputs = {
        "image": (Image, "/camera/color/image_raw", raw_images(), "messages_image"),
        "compressed": (
            CompressedImage,
            "/wrist/color/image_raw/compressed",
            compressed_images(),
            "messages_image",
        ),
        "depth": (Image, "/camera/depth/image_raw", raw_images(("16UC1", "32FC1")), "messages_depth"),
        "camera_info": (CameraInfo, "/camera/color/camera_info", camera_infos(), "messages_camera_info"),
        "pose": (PoseStamped, "/camera/pose", pose_stampeds(), "messages_pose"),
        "question": (String, f"{NODE}/question", question_texts(), "messages_question"),
    }
    domain_id = random.SystemRandom().choice(SAFE_DOMAIN_IDS)
    node = _Node(domain_id, params)
    client = _Client(domain_id, [])
    sent = 0
    try:
        client.wait_active(node)
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        publishers = {
            name: client.node.create_publisher(t, topic, qos) for name, (t, topic, _, _) in inputs.items()
        }
        while not all(p.get_subscription_count() for p in publishers.values()):
            time.sleep(0.05)
        time.sleep(1.0)
        rss_before = node.rss_bytes()
        started = time.monotonic()
        for name, (_, _, strategy, counter) in inputs.items():
            sent += _publish_generated(client, publishers[name], strategy, counter, per_input)
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 60.0
        counters = [counter for _, _, _, counter in inputs.values()]
        while time.monotonic() < deadline:
            counted = sum(int(client.diagnostics.get(c, "0")) for c in set(counters))
            if counted >= sent:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        rss_after = node.rss_bytes()
        diagnostics = dict(client.diagnostics)
        crashed = node.process.poll() is not None
    finally:
        client.close()
        node.stop()
    counted = sum(int(diagnostics.get(c, "0")) for c in {counter for *_, counter in inputs.values()})
    return {
        "fuzz_messages_sent": sent,
        "fuzz_messages_counted_by_node": counted,
        "fuzz_callback_errors": sum(
            int(diagnostics.get(f"callback_error_{kind}", "0"))
            for kind in ("image", "depth", "camera_info", "pose", "question")
        ),
        "fuzz_crashes": int(crashed),
        "fuzz_messages_per_s": round(sent / seconds, 1),
        "fuzz_rss_before_mb": round(rss_before / 2**20, 1),
        "fuzz_rss_after_mb": round(rss_after / 2**20, 1),
        "fuzz_rss_growth_mb": round((rss_after - rss_before) / 2**20, 1),
    }


def run(args) -> dict:
    model = _tiny_model(args)
    figures = _round_trip(args, model)
    seconds = 4.0 if args.quick else args.ingest_seconds
    figures.update(_ingest(args, model, seconds, question_period_s=0.0))
    for profile in ("cpu", "jetson_orin"):
        figures.update(
            _ingest(
                args,
                model,
                seconds,
                question_period_s=0.0,
                qos=_profile_qos(profile),
                prefix=f"ingest_{profile}_qos",
            )
        )
    figures.update(_configure(args, model))
    figures.update(_fuzz(args, model))
    if args.soak_minutes > 0:
        figures.update(_ingest(args, model, args.soak_minutes * 60.0, question_period_s=1.0, soak=True))
    return figures
