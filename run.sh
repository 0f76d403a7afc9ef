#!/usr/bin/env bash
# One entry point that does all set-up on a fresh machine, then runs a job.
#   bash run.sh demo   # the main job, offline: glyph dataset -> tiny model -> samples (a few minutes on CPU)
#   bash run.sh test   # the test suite
#   bash run.sh app    # the Gradio page (glyffuser app [--model PATH_OR_REPO] [--port N])
# Set-up (idempotent): a .venv with a pinned CPU torch installed first (a bare `torch` would pull a
# multi-GB CUDA build), then this package with its extras; Debian's unicode-data for Unihan if missing;
# for the tests, Debian's AR PL fonts (typefaces) and chromium (the app's browser test).
set -euo pipefail
cd "$(dirname "$0")"

TORCH_VERSION="${GLYFFUSER_TORCH_VERSION:-2.13.0}"
VENV="${GLYFFUSER_VENV:-.venv}"
PY="$VENV/bin/python"

setup() {
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.glyffuser-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
    "$PY" -m pip install -q -e ".[dev,viz]"
    touch "$stamp"
  fi
  # Unihan (kDefinition, kRSUnicode) comes from Debian's unicode-data package.
  if [ ! -e /usr/share/unicode/Unihan_Readings.txt.bz2 ] && [ ! -e /usr/share/unicode/Unihan_Readings.txt ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unicode-data >/dev/null
    else
      echo "warning: Unihan not found; install Debian's unicode-data (or pass --unihan PATH)" >&2
    fi
  fi
}

# The typeface judge and the LoRA tests render Debian's AR PL fonts (Kai/brush and Ming/serif styles).
setup_fonts() {
  if [ ! -e /usr/share/fonts/truetype/arphic/ukai.ttc ] || [ ! -e /usr/share/fonts/truetype/arphic/uming.ttc ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-arphic-ukai fonts-arphic-uming >/dev/null
    else
      echo "warning: no AR PL fonts; install Debian's fonts-arphic-ukai fonts-arphic-uming (their tests are skipped)" >&2
    fi
  fi
}

# The app's browser test drives Debian's headless Chromium (Playwright is pointed at it; nothing downloads a browser).
setup_browser() {
  if [ ! -x "${GLYFFUSER_CHROMIUM:-/usr/bin/chromium}" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "warning: no /usr/bin/chromium; install Debian's chromium for the browser test (or pytest -m 'not browser')" >&2
    fi
  fi
}

job="${1:-}"
shift || true
case "$job" in
  demo)
    setup
    export HF_HUB_OFFLINE=1
    exec "$VENV/bin/glyffuser" demo "$@"
    ;;
  test)
    setup
    setup_fonts
    setup_browser
    "$VENV/bin/ruff" check .
    exec "$PY" -m pytest "$@"
    ;;
  app)
    setup
    exec "$VENV/bin/glyffuser" app "$@"
    ;;
  setup)
    setup
    setup_browser
    ;;
  *)
    echo "usage: bash run.sh {demo|test|app|setup} [args...]" >&2
    exit 2
    ;;
esac
