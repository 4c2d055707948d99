#!/bin/sh
# Install nbo from a source tree into a virtual environment: the one install step the Dockerfile
# runs, and the one tests/deploy/test_container_install.py runs (with --no-deps --no-index).
#
#   deploy/install.sh SOURCE_DIR VENV_DIR [extra pip arguments]
#
# The venv is created with ${PYTHON:-python3} unless it exists. pip installs the package (not
# editable) with its dependencies from the package index; extra arguments go to pip.
set -eu
src="$1"
venv="$2"
shift 2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$@" "$src"
"$venv/bin/nbo" --version
