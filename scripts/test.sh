#!/usr/bin/env bash
# Install musicfw with its test dependencies into ./.venv and run the test suite.
# This is the README's test command; .ci/run calls exactly this script from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages some tests need: Debian's chromium (the report page is opened in a real
# headless browser), a small General MIDI soundfont and FluidSynth (samples rendered to audio;
# symusic 0.6.0's own synthesizer fails, see musicfw/music/render.py).
if ! command -v chromium >/dev/null 2>&1 || [ ! -e /usr/share/sounds/sf2/TimGM6mb.sf2 ] \
   || ! command -v fluidsynth >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium timgm6mb-soundfont fluidsynth
  else
    echo "note: chromium, the TimGM6mb soundfont or fluidsynth is missing and cannot be installed here;" \
         "install them (Debian: apt-get install chromium timgm6mb-soundfont fluidsynth) or set" \
         "MUSICFW_SKIP_BROWSER_TESTS=1 to skip the browser test." >&2
  fi
fi

PYTHON=${PYTHON:-python3}
# A .venv whose creation was interrupted has a python but no pip: make it again, whole.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  [ -e .venv ] && echo "note: .venv is incomplete (no working pip); making it again" >&2
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi
# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
# ./models: the pretrained models (the distribution musicfw-models; tests/test_zoo.py loads each)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" ./models

# In parallel (pytest-xdist): one worker per CPU ($MUSICFW_TEST_WORKERS to choose, 0 for one
# process), each test file on one worker (--dist loadfile: a file's module-scoped fixtures are
# built once).  Given through PYTEST_ADDOPTS, so options after the script's name come later on
# pytest's command line and win (`bash scripts/test.sh -n 0` runs in one process).
WORKERS=${MUSICFW_TEST_WORKERS:-auto}
if [ "$WORKERS" != 0 ]; then
  export PYTEST_ADDOPTS="-n $WORKERS --dist loadfile${PYTEST_ADDOPTS:+ $PYTEST_ADDOPTS}"
fi

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose (an empty run proves nothing)." >&2
  exit 1
fi
exit "$rc"
