#!/usr/bin/env bash
# System packages the test tiers need, installed before the tests run (never from inside a test):
# Debian's chromium and chromium-driver for the browser tests when absent and this runs as root with apt;
# with LITEMEDSAM_DOCKER_TESTS=1 a Docker engine too (docker/ensure-docker.sh). Elsewhere the tests that
# need them skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${LITEMEDSAM_NO_INSTALL:-}" != 1 ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } \
      || echo "could not install chromium and chromium-driver: the browser tests will skip" >&2
  fi
  if [ "${LITEMEDSAM_DOCKER_TESTS:-}" = 1 ]; then
    bash docker/ensure-docker.sh
  fi
fi
