# Shared setup for scripts/test.sh and scripts/demo.sh: a project-local virtual
# environment (.venv) with the package and the extras the caller names.
# Usage: source scripts/_env.sh "experiments,test"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: profit-optax needs Python >= 3.10 (found $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing profit-optax[$1] into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$1]"
# Fashion-MNIST for the offline image experiments: Debian ships the original IDX
# files; install them where apt is available (the tests skip, with a reason, otherwise).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ]; then
  echo "==> installing Debian's dataset-fashion-mnist"
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip" >&2
fi
