#!/usr/bin/env bash
# The Python environment tests/interop.rs drives hookgate with: the vendors' SDKs, pinned.
# Idempotent; reinstalls only when requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/interop-venv
req=tests/interop/requirements.txt
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$venv/requirements.txt"
