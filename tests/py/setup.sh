#!/usr/bin/env bash
# The Python test tools, pinned: the vendors' SDKs (tests/interop.rs) and aiosmtpd (the email
# tests). Idempotent and safe to run concurrently; reinstalls only when requirements.txt
# changes. Prints the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/py-venv
req=tests/py/requirements.txt
mkdir -p target
exec 9>target/py-venv.lock
flock 9
if ! { [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; }; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/requirements.txt"
fi
echo "$PWD/$venv/bin/python"
