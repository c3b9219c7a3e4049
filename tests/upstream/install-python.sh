#!/usr/bin/env bash
# Installs PyJWT[crypto] (pinned in requirements.txt beside this file) into a
# virtualenv under the cargo target directory, reused while the pins are
# unchanged, and prints its python's path for ASSERTION_VERIFIER_PYTHON
# (tests/api/upstream_rig.rs runs verify_assertion.py with it). Needs
# Python 3 with venv.
#
#   export ASSERTION_VERIFIER_PYTHON="$(bash tests/upstream/install-python.sh)"
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/assertion-verifier-venv"
STAMP="$VENV/requirements.sha256"
wanted=$(sha256sum tests/upstream/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$VENV"
  mkdir -p "$TARGET"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/upstream/requirements.txt >&2
  echo "$wanted" > "$STAMP"
fi
"$VENV/bin/python" -c 'import jwt; print("PyJWT", jwt.__version__)' >&2
echo "$VENV/bin/python"
