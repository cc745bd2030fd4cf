#!/usr/bin/env bash
# Makes bench/recbole/.venv: RecBole 1.2.1 in a virtualenv of its own, apart from reelflow's
# .venv, because RecBole 1.2.1 needs numpy<2 and pandas<2.3 while reelflow runs on numpy 2.
#
#   bash bench/recbole/setup.sh      # idempotent: returns at once when the venv is up to date
#
# What it installs is bench/recbole/requirements.txt (every package pinned). Then run the
# reference with bench/recbole/run_sasrec.py (see bench/recbole/README.md).
# RECBOLE_VENV=<dir> puts the virtualenv elsewhere (run_sasrec.py does not care where it is).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RECBOLE_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="$HERE/requirements.txt"
# The stamp holds the requirements the venv was made from: a changed lock file reinstalls.
STAMP="$VENV/.reelflow-recbole-requirements.txt"

if [[ -f "$STAMP" ]] && cmp -s "$STAMP" "$REQUIREMENTS"; then
    echo "$VENV is ready"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
# pip, not uv: torch 2.13.0 is found as the CPU wheel pip is pointed at on this machine.
"$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
# Fails here, not in the middle of a benchmark, when something RecBole imports is missing.
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" -W ignore -c \
    "import recbole, torch, numpy, pandas; from recbole.quick_start import run_recbole; \
from recbole.model.sequential_recommender.sasrec import SASRec; \
print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, \
'pandas', pandas.__version__)"
cp "$REQUIREMENTS" "$STAMP"
echo "$VENV is ready"
