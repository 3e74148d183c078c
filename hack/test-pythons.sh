#!/usr/bin/env bash
# The pure-logic test tiers on the other Python versions the package claims (requires-python >= 3.11;
# `make test` runs everything on the default python3). One venv per version: .venv-<version>.
#
# An interpreter is python<version> on PATH, else the newest ~/.pyenv/versions/<version>.* (pyenv's
# shims only run the versions pyenv has selected, so the install is used directly).
# Missing: skipped with a message locally, a failure under CI=true (CI must test what we claim).
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${PYTHON_VERSIONS:-"3.12 3.13"}
# Tiers that need no external tool and no server: parsers, decisions, slots, scheduling, metrics
# definitions, the controller against its recording fake.
tiers=${UNIT_TIERS:-"tests/agent_unit tests/metrics tests/agent_controller"}

find_python() {  # an interpreter that runs (a pyenv shim for a version not selected does not)
    local v=$1 candidate
    for candidate in "$(command -v "python$v" 2>/dev/null || true)" \
        $(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/"python$v" 2>/dev/null | sort -rV); do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
}

status=0
for v in $versions; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        if [ "${CI:-}" = "true" ]; then
            echo "test-pythons: python$v not found (PATH, ~/.pyenv/versions): CI=true, failing" >&2
            status=1
            continue
        fi
        echo "test-pythons: python$v not found (PATH, ~/.pyenv/versions): its unit tiers are skipped" >&2
        continue
    fi
    venv=".venv-$v"
    stamp="$venv/.installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$py" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -e '.[test]'
        touch "$stamp"
    fi
    echo "test-pythons: $("$venv/bin/python" --version) on $tiers"
    # shellcheck disable=SC2086 # tiers is a list of paths
    "$venv/bin/python" -m pytest -q -p no:cacheprovider $tiers || status=1
done
exit $status
