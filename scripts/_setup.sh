# Sourced by scripts/demo and scripts/test: one virtualenv for the project,
# created and brought up to date on demand, so a fresh machine needs nothing else.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv in .venv" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the runner and its dev tools (one time; log in .venv/install.log)" >&2
  if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
         "$VENV/bin/python" -m pip install -e "$ROOT[dev]"; } >"$VENV/install.log" 2>&1; then
    tail -n 30 "$VENV/install.log" >&2
    echo "setup: pip install failed; the whole log is $VENV/install.log" >&2
    exit 1
  fi
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
