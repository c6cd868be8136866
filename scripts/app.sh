#!/usr/bin/env bash
# Start advlab: creates .venv and installs requirements.txt the first time, then runs the app.
# Extra arguments go to streamlit (e.g. --server.port 8502).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv
install_requirements requirements.txt
cd "$ROOT"
exec "$VENV/bin/python" -m streamlit run app.py "$@"
