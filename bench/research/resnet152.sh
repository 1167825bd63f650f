#!/usr/bin/env bash
# The ResNet-152 research backbone (issue 26): torchvision's ImageNet ResNet-152 as kept inside the
# PyPI package resmem (its `features.*` tensors), converted by `zeroqc convert` into build/models/,
# read at layer2 + layer3 as PatchCore reads WideResNet-50. A measurement only: resmem's licence is
# non-commercial, so it is never installed by setup.sh, never shipped and never a default.
#
#   bench/research/resnet152.sh            # then: build/zeroqc bench SETS --backbone build/models/resnet152.json
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=1.1.6
SHA256=2ed9d656280761215cde8f94a58197cdca523ccacb36fbd949edbea7a62c5572  # the wheel as PyPI serves it
DEPS=.deps/resmem
whl=$DEPS/resmem-$VERSION-py3-none-any.whl
[ -x build/zeroqc ] || { echo "build/zeroqc is missing: run ./setup.sh first" >&2; exit 2; }
mkdir -p "$DEPS"
if [ ! -f "$whl" ]; then
  echo "== fetching resmem==$VERSION from PyPI (528 MB: a ResNet-152 inside)" >&2
  python3 -m pip download --quiet --no-deps --no-cache-dir -d "$DEPS" "resmem==$VERSION"
fi
got=$(sha256sum "$whl" | cut -d' ' -f1)
[ "$got" = "$SHA256" ] || { echo "resmem wheel checksum mismatch: got sha256 $got" >&2; exit 1; }
[ -f "$DEPS/model.pt" ] || unzip -p "$whl" resmem/model.pt > "$DEPS/model.pt"
# resmem trained its head on images scaled to [0, 1] without ImageNet's normalisation, and its
# ResNet's BatchNorm statistics followed them (frozen weights, running statistics updated): so this
# backbone reads [0, 1] pixels (mean 0, std 1). With ImageNet's normalisation it calls every part a
# stopwatch; without, it names bottles, dough and bagels as the Lite family does.
build/zeroqc convert --pytorch "$DEPS/model.pt" --arch resnet152 --prefix features. --size 416 \
  --out build/models/resnet152_416.onnx --outputs layer2 layer3
cat > build/models/resnet152.json <<JSON
{
  "name": "resnet152-resmem",
  "model": "resnet152_416.onnx",
  "input_width": 416,
  "input_height": 416,
  "mean": [0, 0, 0],
  "std": [1, 1, 1],
  "layers": ["layer2", "layer3"]
}
JSON
echo "wrote build/models/resnet152.json" >&2
