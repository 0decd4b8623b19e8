#!/usr/bin/env bash
# Make a Docker engine available (root): install Debian's docker.io and debootstrap when absent,
# start dockerd when none answers. CI runs this before the Docker tests.
set -euo pipefail
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  nohup setsid dockerd > /tmp/litemedsam-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /tmp/litemedsam-dockerd.log" >&2; exit 1; }
fi
