#!/usr/bin/env bash
# Builds the swap-demo images that swap's tests and demo deploy use. No image
# registry is reachable where swap is tested, so every image is built locally:
# FROM scratch around one statically linked binary, one build context per tag
# under demo/image/<tag>/. Safe to re-run: cargo and Docker's layer cache make a
# run with nothing changed take about a second.
#
# Usage: demo/build-images.sh [TAG...]   (default: every tag)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

all_tags=(v1 v2 crash unhealthy plain-v1 plain-v2)
if [ "$#" -gt 0 ]; then tags=("$@"); else tags=("${all_tags[@]}"); fi

# crt-static makes the binary run in a scratch image, which has no libc.
# target/demo keeps these flags from invalidating the main build's cache.
# Remapping the checkout's path makes the binary the same byte for byte in
# every checkout of the same sources, so two checkouts on one engine build
# the same image ids (Docker's layer cache) instead of retagging
# swap-demo:* under each other's running tests.
echo "build-images: building the static swap-demo binary" >&2
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$repo=/swap" \
    cargo build --quiet --release -p swap-demo --target-dir target/demo
binary="target/demo/release/swap-demo"
if command -v file >/dev/null && ! file "$binary" | grep -q 'static'; then
    echo "build-images: $binary is not statically linked" >&2
    exit 1
fi

for tag in "${tags[@]}"; do
    context="demo/image/$tag"
    if [ ! -f "$context/Dockerfile" ]; then
        echo "build-images: no build context $context" >&2
        exit 2
    fi
    # Copy only when changed, so an unchanged binary keeps its mtime and the
    # context stays byte-identical (Docker's COPY cache then hits).
    if ! cmp -s "$binary" "$context/swap-demo"; then
        cp "$binary" "$context/swap-demo"
    fi
    echo "build-images: docker build -t swap-demo:$tag $context" >&2
    # The 20.10 CLI warns on every build that the legacy builder is
    # deprecated; show Docker's output only when the build fails.
    if ! out="$(docker build --quiet -t "swap-demo:$tag" "$context" 2>&1)"; then
        printf '%s\n' "$out" >&2
        exit 1
    fi
done
echo "build-images: done (${tags[*]})" >&2
