#!/usr/bin/env bash
# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
#
# One idempotent set-up: .venv with pinned dependencies (torch first), the ROS 2 Jazzy wheels with
# the fixes they need for message generation, then the interfaces and the Python package built and
# installed into the venv. A second run only rebuilds what changed (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" - <<'PYCHECK'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 13)):
    sys.exit(f"ROS 2 Jazzy wheels need CPython 3.10-3.13, found {sys.version.split()[0]}")
PYCHECK

# Dependencies: re-installed only when a requirements file changed.
req_hash=$(cat requirements/torch.txt requirements/ros.txt requirements/lock.txt | sha256sum | cut -c1-16)
stamp="$VENV/.spatial_mllm_deps"
if [ "$(cat "$stamp" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned dependencies"
  "$VPY" -m pip install -q --disable-pip-version-check -r requirements/torch.txt
  "$VPY" -m pip install -q --disable-pip-version-check -r requirements/ros.txt
  "$VPY" -m pip install -q --disable-pip-version-check -r requirements/lock.txt
  echo "$req_hash" > "$stamp"
else
  log "dependencies up to date"
fi

# The wheels' CMake exports point at the build machine's /opt/python/cpXY-cpXY prefix.
py_include=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$VPY" -c 'import numpy; print(numpy.get_include())')
mapfile -t stale < <(grep -rl --include='*.cmake' '/opt/python/cp' "$VENV/share" || true)
if [ "${#stale[@]}" -gt 0 ]; then
  log "rewriting ${#stale[@]} CMake exports to $py_include"
  sed -i -E \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${py_include}#g" \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${np_include}#g" \
    "${stale[@]}"
fi

# Interfaces + Python sources + ros2-run launchers, into the venv prefix (incremental).
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
mkdir -p build
# tf2_msgs/TFMessage (tf poses without tf2_ros): built from its definition only when find_package fails.
if ! cmake -S interfaces/tf2_msgs/probe -B build/tf2_msgs_probe -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$VPY" > build/tf2_msgs_probe.log 2>&1; then
  log "building tf2_msgs/TFMessage (no tf2_msgs found)"
  cmake -S interfaces/tf2_msgs -B build/tf2_msgs -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > build/tf2_msgs.log 2>&1 &&
    cmake --build build/tf2_msgs -j "$(nproc)" >> build/tf2_msgs.log 2>&1 &&
    cmake --install build/tf2_msgs > /dev/null || { tail -40 build/tf2_msgs.log; exit 1; }
fi
if [ ! -f build/ros/CMakeCache.txt ]; then
  log "configuring the ROS build"
  cmake -S . -B build/ros -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > build/ros.log 2>&1 || { tail -40 build/ros.log; exit 1; }
fi
cmake --build build/ros -j "$(nproc)" >> build/ros.log 2>&1 || { tail -40 build/ros.log; exit 1; }
cmake --install build/ros > /dev/null

# Console scripts and the pip metadata (only when setup.py changed).
pkg_hash=$(sha256sum setup.py | cut -c1-16)
pkg_stamp="$VENV/.spatial_mllm_pkg"
if [ "$(cat "$pkg_stamp" 2>/dev/null)" != "$pkg_hash" ]; then
  log "installing console scripts"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation .
  cmake --install build/ros > /dev/null   # pip copied the same sources; keep CMake's install last
  echo "$pkg_hash" > "$pkg_stamp"
fi
log "ready: $VENV"
