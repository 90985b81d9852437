# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
#
#   make demo    set up (once), build the synthetic scene, answer its questions, label rewards
#   make test    set up (idempotent) and run the whole test suite
#   make bench   every benchmark; make bench-<area> for one (frames model engine nodes reward eval)

VENV ?= .venv
PY := $(VENV)/bin/python
BENCH_AREAS := frames model engine nodes reward eval
# Real DDS on this machine only; logs out of $HOME.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_logs
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test lint bench $(addprefix bench-,$(BENCH_AREAS)) clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m spatial_mllm_ros.cli demo $(if $(MODEL),--model $(MODEL))

test: setup
	$(PY) -m pytest -q test

lint: setup
	$(VENV)/bin/ruff check .

bench: $(addprefix bench-,$(BENCH_AREAS))

$(addprefix bench-,$(BENCH_AREAS)): bench-%: setup
	$(PY) -m spatial_mllm_ros.cli bench $*

clean:
	rm -rf build benchmarks/results
