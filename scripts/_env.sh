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
# Offline corpora from Debian, installed where apt is available (the tests that need
# them skip, with a reason, otherwise): Fashion-MNIST's original IDX files for the image
# experiments; the World English and King James Bibles (SWORD zText modules) and the
# Python 3.11 documentation sources for the language-model experiments.
DEBIAN_DATA="dataset-fashion-mnist sword-text-web sword-text-kjv python3.11-doc"
if { [ ! -d /usr/share/datasets/fashion-mnist ] \
     || [ ! -d /usr/share/sword/modules/texts/ztext/engWEB2015eb ] \
     || [ ! -d /usr/share/sword/modules/texts/ztext/engKJV2006eb ] \
     || [ ! -d /usr/share/doc/python3.11/html/_sources ]; } \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing Debian's $DEBIAN_DATA"
  # shellcheck disable=SC2086  # one word per package
  (apt-get update -qq && apt-get install -y -qq $DEBIAN_DATA) >/dev/null 2>&1 \
    || echo "warning: could not install $DEBIAN_DATA; the tests that need them will skip" >&2
fi
