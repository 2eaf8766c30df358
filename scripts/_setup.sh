# Sourced by scripts/demo, scripts/test and scripts/lock: one virtualenv for the project,
# created and brought up to date on demand, so a fresh machine needs nothing else.
# It installs exactly the versions pinned (with hashes) in requirements.lock, with uv (itself
# pinned there and bootstrapped from PyPI), then the project itself, editable.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
LOCK="$ROOT/requirements.lock"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv in .venv" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
uv_pin=$(grep -m1 -E '^uv==' "$LOCK" | sed -E 's/^uv==([^ ]+).*/\1/')
if [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$uv_pin" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_pin" >/dev/null 2>&1 ||
    { echo "setup: could not install uv==$uv_pin from PyPI" >&2; exit 1; }
fi
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$LOCK" | sha256sum | cut -c1-16)"
if [ "${1:-}" != "--no-install" ] && [ ! -f "$stamp" ]; then
  echo "setup: installing the locked versions (requirements.lock; log in .venv/install.log)" >&2
  if ! { "$VENV/bin/uv" pip sync --python "$VENV/bin/python" --require-hashes "$LOCK" &&
         "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps -e "$ROOT"; } \
       >"$VENV/install.log" 2>&1; then
    tail -n 30 "$VENV/install.log" >&2
    echo "setup: install failed; the whole log is $VENV/install.log" >&2
    exit 1
  fi
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
