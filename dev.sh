#!/usr/bin/env bash
# One entry point that sets up a virtual environment (idempotent) and then runs something:
#   bash dev.sh app [--host H --port P]   start the app on the embedded default model (offline)
#   bash dev.sh test [pytest args]        lint (ruff), then run the whole test suite (all tiers)
set -euo pipefail
cd "$(dirname "$0")"
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
reqs=(-r requirements.txt)
[ "${1:-}" = "test" ] && reqs+=(-r requirements-test.txt -r requirements-ray.txt)
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${reqs[@]}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .   # the packages + videoxai
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null; then   # for the browser test; skipped without it
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # dpkg --configure -a first: an interrupted earlier install (seen on these machines) blocks apt-get
    (export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a && apt-get update -qq &&
       apt-get install -y -qq chromium >/dev/null) ||
      echo "dev.sh: could not install chromium; the browser test will be skipped" >&2
  else
    echo "dev.sh: no chromium (install it with: sudo apt-get install chromium); the browser test will be skipped" >&2
  fi
fi
case "${1:-}" in
  app) shift; exec .venv/bin/python app.py "$@" ;;
  test) shift; .venv/bin/ruff check .
        exec env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
          .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash dev.sh app|test [args]" >&2; exit 2 ;;
esac
