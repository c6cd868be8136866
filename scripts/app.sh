#!/usr/bin/env bash
# Start advlab: creates .venv and installs requirements.txt the first time, then runs the app.
# Extra arguments go to streamlit (e.g. --server.port 8502).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv
# Idle OpenMP threads sleep instead of spinning: with spinning, torch on 2 cores slowed 10-60x whenever
# another process (another session's job, a test server) shared the CPU (bench/README.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
install_requirements requirements.txt
cd "$ROOT"
exec "$VENV/bin/python" -m streamlit run app.py "$@"
