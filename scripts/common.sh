# Sourced by the scripts that train and report: the repo root, the Python to use, where the
# corpora and the coded-copy cache live, and a check that names a missing corpus.
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), WORK (data), CACHE (.cache/coded).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
device=${DEVICE:-auto}
work=${WORK:-data}
cache=${CACHE:-.cache/coded}
train="$py -m training.cli"

# need_corpus NAME...: exits 2, naming the first corpus missing under $work.
need_corpus() {
  local name
  for name in "$@"; do
    if [ ! -d "$work/$name" ]; then
      echo "no $name corpus under $work/: run scripts/make-models.sh first (or set WORK)" >&2
      exit 2
    fi
  done
}
