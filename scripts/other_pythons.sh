#!/usr/bin/env bash
# The fast tier (no models, no data, as on a fresh clone) on the lowest and the newest Python pyproject.toml promises
# (3.9 and 3.13), each in its own venv (.venv-pyX.Y) with the package and its test extra, when this machine has
# that Python (on PATH as pythonX.Y, or pyenv's); one that is absent is said and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
for version in 3.9 3.13; do
  python=""
  for candidate in "$(command -v "python$version" || true)" \
                   $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -1); do
    # one that runs (a pyenv shim names a Python that may not be selected: it then fails)
    if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then python="$candidate"; break; fi
  done
  if [ -z "$python" ]; then
    echo "Python $version is not on this machine: its fast tier is skipped"
    continue
  fi
  venv=".venv-py$version"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
  empty="$(mktemp -d)"
  echo "Python $version: the fast tier"
  LITEMEDSAM_REQUIRE_MODELS=0 LITEMEDSAM_REQUIRE_DATA=0 LITEMEDSAM_WORK_DIR="$empty" LITEMEDSAM_DEV_DATA="$empty/none" \
    "$venv/bin/python" -m pytest -q -m fast -p no:cacheprovider
  rm -rf "$empty"
done
