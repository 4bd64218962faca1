#!/usr/bin/env bash
# What a user gets from `pip install .`: build the wheel, install it without extras into a fresh
# virtual environment (torch's CPU build first, as the README says), then, from an empty folder,
# ingest one file of each supported format and serve the bundled default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/verbatim-install-XXXXXX")
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" . 2>&1 | grep -v "WARNING: Location" || true
WHEEL=$(ls "$WORK"/dist/verbatim-*.whl)
TOP=$("$PYTHON" -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); print(' '.join(sorted({n.split('/')[0] for n in names if '.dist-info/' not in n})))" "$WHEEL")
if [ "$TOP" != "verbatim" ]; then
  echo "the wheel must hold one top-level package, verbatim; it holds: $TOP" >&2
  exit 1
fi

"$PYTHON" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/python -m pip --quiet --disable-pip-version-check"
$PIP install torch==2.13.0 2>&1 | grep -v "WARNING: Location" || true
$PIP install "$WHEEL" 2>&1 | grep -v "WARNING: Location" || true
VERBATIM="$WORK/venv/bin/verbatim"
if "$WORK/venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  echo "pip install . pulled matplotlib; it belongs to the plot extra" >&2
  exit 1
fi

mkdir -p "$WORK/docs" "$WORK/empty"
cd "$WORK/docs"
printf -- '---\ntitle: Markdown\n---\n\nWater the tomatoes every morning in summer.\n' > a.md
printf 'Plain text\n\nKnead the dough for ten minutes before it rises.\n' > b.txt
printf '<html><head><title>HTML page</title></head><body><article><h1>HTML page</h1><p>Change the engine oil every ten thousand kilometres to keep it healthy.</p></article></body></html>' > c.html
printf '{"_id": "d1", "title": "JSON lines", "text": "Prune the roses in early spring, before new growth."}\n' > d.jsonl
export VERBATIM_PROGRESS=false HF_HUB_OFFLINE=1
VERBATIM_DATA_DIR="$WORK/data-docs" "$VERBATIM" ingest "$WORK/docs" | tee "$WORK/ingest.txt"
grep -q "^Indexed 4 documents" "$WORK/ingest.txt"

cd "$WORK/empty"
PORT=$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
VERBATIM_DATA_DIR="$WORK/data-serve" "$VERBATIM" serve --port "$PORT" &
SERVER=$!
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "verbatim serve exited" >&2; exit 1; }
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/api/health" | grep -q '"documents":2'
curl -sf "http://127.0.0.1:$PORT/api/ask?q=What+if+my+partner+refuses+therapy%3F" | grep -q '"quotes":\[{'
echo "install check passed: wheel of one package, 4 formats read, default corpus served"
