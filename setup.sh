#!/usr/bin/env bash
# Installs every dependency (Debian packages, two npm packages), builds build/zeroqc and converts
# the default backbone into build/models/. Safe to run again: finished steps are skipped.
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
          chromium wrk curl clang libclang-rt-14-dev libpq-dev postgresql-15 libmosquitto-dev mosquitto)
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

if [ "${1:-}" != "--no-demo" ]; then
  say "running the demo"
  build/zeroqc demo --out demo-out
fi
