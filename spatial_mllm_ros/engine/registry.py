# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Names of the engine's interchangeable parts, in one place and without importing torch.

``backends.make_backend`` accepts exactly :data:`BACKEND_NAMES` (plus short aliases) and
``model.loading.resolve_dtype`` exactly :data:`DTYPE_NAMES` (plus short aliases), ``engine.llm_onnx``
exactly :data:`LLM_BACKEND_NAMES` and :data:`LLM_QUANTIZATIONS`; the parameter table offers the same
names as choices. Frame selectors are named by ``core.selection.SELECTORS``.
"""

from __future__ import annotations

BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
LLM_BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")
LLM_QUANTIZATIONS = ("none", "int8", "int4")
