#!/usr/bin/env bash
# Installs openapi-spec-validator (pinned in requirements.txt beside this
# file) into a virtualenv under the cargo target directory, reused while the
# pins are unchanged, and prints the command's path for
# OPENAPI_SPEC_VALIDATOR (tests/api/openapi.rs). Needs Python 3 with venv.
#
#   export OPENAPI_SPEC_VALIDATOR="$(bash tests/openapi/install.sh)"
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/openapi-spec-validator-venv"
STAMP="$VENV/requirements.sha256"
wanted=$(sha256sum tests/openapi/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/openapi-spec-validator" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$VENV"
  mkdir -p "$TARGET"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/openapi/requirements.txt >&2
  echo "$wanted" > "$STAMP"
fi
"$VENV/bin/openapi-spec-validator" --version >&2
echo "$VENV/bin/openapi-spec-validator"
