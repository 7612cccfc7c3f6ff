#!/usr/bin/env bash
# Installs the pinned schemathesis (from PyPI) into tests/schemathesis/.venv, where the
# schema test (tests/tests/api_schema.rs) looks for it. Idempotent; needs python3 with venv
# (installs Debian's python3-venv when it is missing and we are root).
set -euo pipefail
cd "$(dirname "$0")"

VERSION=4.32.5
VENV=.venv

if [ -x "$VENV/bin/st" ] && "$VENV/bin/st" --version 2>/dev/null | grep -qF "$VERSION"; then
    exit 0
fi
rm -rf "$VENV"
if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if [ "$(id -u)" -ne 0 ]; then
        echo "python3 cannot create a virtual environment: install python3-venv" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$VENV/bin/st" --version
