#!/usr/bin/env bash
# Installs aiosmtpd (pinned in requirements.txt beside this file) into a
# virtualenv under the cargo target directory, reused while the pins are
# unchanged, and prints its python's path for SMTP_SINK_PYTHON
# (tests/api/email.rs runs sink.py with it). Needs Python 3 with venv.
#
#   export SMTP_SINK_PYTHON="$(bash tests/smtp/install.sh)"
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/smtp-sink-venv"
STAMP="$VENV/requirements.sha256"
wanted=$(sha256sum tests/smtp/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$VENV"
  mkdir -p "$TARGET"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/smtp/requirements.txt >&2
  echo "$wanted" > "$STAMP"
fi
"$VENV/bin/python" -c 'from aiosmtpd import __version__; print("aiosmtpd", __version__)' >&2
echo "$VENV/bin/python"
