#!/usr/bin/env bash
# Builds the node image (default tag silkgate:dev) from this checkout, no registry needed.
#
#   bash deploy/build-image.sh [TAG]
#
# 1. cargo builds a static (glibc, crt-static) release binary for x86_64-unknown-linux-gnu
#    in cargo's usual target directory, so a second run reuses the build;
# 2. a minimal build context is staged in a temporary directory: the binary, the shipped
#    policies (without their tests) and an empty data directory;
# 3. `docker build` runs deploy/Dockerfile (FROM scratch) over that context.
#
# Environment: SILKGATE_IMAGE (tag, default silkgate:dev; an argument wins),
# CARGO_TARGET_DIR (honoured like cargo does).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-${SILKGATE_IMAGE:-silkgate:dev}}
triple=x86_64-unknown-linux-gnu
cd "$root"

command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "error: the docker engine does not answer (is dockerd running?)" >&2; exit 2; }

echo "== cargo build (static, release)"
# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros, which
# must stay dynamic host binaries.
# `--cfg tokio_unstable` as in .cargo/config.toml, which RUSTFLAGS replaces.
RUSTFLAGS="-C target-feature=+crt-static --cfg tokio_unstable" \
    cargo build --release --locked --target "$triple" -p silkgate --bin silkgate
target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
bin=$target_dir/$triple/release/silkgate

# A dynamic binary would fail in the scratch image with a confusing "no such file".
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/silkgate-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/silkgate"
# Line tables are for local debugging; the image keeps symbols (names in backtraces).
if command -v strip >/dev/null; then strip --strip-debug "$ctx/silkgate"; fi
mkdir -p "$ctx/policy" "$ctx/data"
chmod 0700 "$ctx/data"
# Policies and the data files they name; policy test cases and fixtures stay out.
find policy -maxdepth 1 -name '*.toml' ! -name '*.tests.toml' -exec cp {} "$ctx/policy/" \;
if [ -d policy/data ]; then cp -r policy/data "$ctx/policy/data"; fi
chmod -R a+rX,go-w "$ctx/policy"
cp deploy/Dockerfile "$ctx/Dockerfile"

echo "== docker build -t $tag"
docker build --tag "$tag" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --label "org.opencontainers.image.source=silkgate" \
    "$ctx"
docker image inspect --format "built $tag: {{.Id}} ({{.Size}} bytes)" "$tag"
