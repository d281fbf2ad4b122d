# Sourced by the scripts that train and report: the repo root, the Python to use, where the
# corpora and the coded-copy cache live, and a check that names a missing corpus.
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), WORK (data), CACHE (.cache/coded),
# KITCHEN20 (the real recordings, default ../shared/data/kitchen20).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
device=${DEVICE:-auto}
work=${WORK:-data}
cache=${CACHE:-.cache/coded}
kitchen20=${KITCHEN20:-../shared/data/kitchen20}
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

# need_kitchen20: exits 2 when the real recordings (Kitchen20's meta.csv) are not at $kitchen20.
need_kitchen20() {
  if [ ! -f "$kitchen20/meta.csv" ]; then
    echo "no Kitchen20 at $kitchen20 (meta.csv): set KITCHEN20 to its folder" >&2
    exit 2
  fi
}
