#!/usr/bin/env bash
# Build a minimal Debian bookworm image with Python 3.11 where no registry can be pulled from:
#   bash docker/build-base.sh [TAG]        (default: litemedsam-base:bookworm; needs root)
# debootstrap fetches Debian packages (its default mirror, or $DEBIAN_MIRROR), docker import makes
# the image. Then: bash docker/build.sh --base litemedsam-base:bookworm
set -euo pipefail
TAG=${1:-litemedsam-base:bookworm}
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 2; }
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOT" ${DEBIAN_MIRROR:-} >&2
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
tar -C "$ROOT" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "$TAG"
