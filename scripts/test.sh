#!/usr/bin/env bash
# Run the whole test suite: installs the dev requirements into .venv and, when run as root on a
# Debian machine without it, Debian's Chromium for the browser tests. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv
# Idle OpenMP threads sleep instead of spinning: with spinning, torch on 2 cores slowed 10-60x whenever
# another process (another session's job, a test server) shared the CPU (bench/README.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
install_requirements requirements-dev.txt
# Ray for the sharded backend (--backend ray) and its tests; the app does not need it.
install_requirements requirements-scale.txt
if [ ! -f "$VENV/.stamp-bench" ] || ! "$VENV/bin/python" -c "import torchattacks" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --no-deps -r "$ROOT/requirements-bench.txt" && touch "$VENV/.stamp-bench"
fi
# Debian packages the tests use: chromium (browser tests) and the full Fashion-MNIST (a few data tests;
# everything else uses the subset shipped in assets/). Installed only as root with apt, once.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "advlab: installing Debian packages: ${missing[*]}" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "advlab: could not install ${missing[*]}; the tests that need them will be skipped" >&2
fi
# In CI a missing browser must fail the run, not skip the browser tests.
if [ "${CI:-}" = "true" ]; then export ADVLAB_REQUIRE_BROWSER=1; fi
cd "$ROOT"
# Two test processes (pytest-xdist): on 2 cores the serial suite kept them 42% busy (measured: 5:46 of CPU in
# 6:54). The browser tests share one process and one server (tests/conftest.py); ADVLAB_TEST_PROCESSES=0 (or
# -n 0 among the arguments) runs everything in this process.
exec "$VENV/bin/python" -m pytest -n "${ADVLAB_TEST_PROCESSES:-2}" --dist loadgroup "$@"
