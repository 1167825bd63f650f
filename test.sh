#!/usr/bin/env bash
# The test command: sets up (without the demo) and runs the whole GoogleTest suite through ctest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --no-demo
ctest --test-dir build --output-on-failure -j2 "$@"
