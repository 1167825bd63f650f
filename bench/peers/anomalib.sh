#!/usr/bin/env bash
# zeroqc side by side with anomalib's PatchCore (eager PyTorch and OpenVINO) on the MVTec toothbrush
# set, K = 1, 16 and all references, alternating, in one run; prints the table for docs/BENCHMARKS.md.
# The peer lives in a virtualenv under .deps/anomalib with the pinned packages of
# bench/peers/anomalib-requirements.txt (from PyPI; never in setup.sh or CI: it is a benchmark).
#
#   bench/peers/anomalib.sh [--rounds 3] [--shots 1,16,all] [--json out.json]
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.deps/anomalib
if [ ! -x "$venv/bin/python" ] || ! cmp -s bench/peers/anomalib-requirements.txt "$venv/requirements.txt"; then
  echo "== installing the peer into $venv (PyTorch with its CUDA libraries from PyPI: a few GB, once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --no-deps -r bench/peers/anomalib-requirements.txt
  cp bench/peers/anomalib-requirements.txt "$venv/requirements.txt"
fi
[ -x build/zeroqc ] || { echo "build/zeroqc is missing: run ./setup.sh first" >&2; exit 2; }
lscpu | sed -n 's/^Model name: *//p' | sed 's/^/CPU: /' >&2
exec "$venv/bin/python" bench/peers/anomalib_peer.py --zeroqc build/zeroqc --dataset ../shared/datasets/mvtec-toothbrush "$@"
