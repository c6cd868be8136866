# Shared by scripts/app.sh and scripts/test.sh: make .venv and install a requirements file once.
# Re-running is cheap: a stamp holding the file's hash skips pip when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "advlab: creating $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
}

# install_requirements FILE [pip options...]
install_requirements() {
  local file="$1"; shift
  local stamp="$VENV/.stamp-$(basename "$file")"
  local hash
  hash="$(cat "$ROOT/$file" "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
    echo "advlab: installing $file" >&2
    "$VENV/bin/python" -m pip install --quiet "$@" -r "$ROOT/$file"
    echo "$hash" > "$stamp"
  fi
}
