# The README's two commands: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck install-check fix eval eval-docs cv bench scale stress audit browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch must come first; otherwise a dependency pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# test: pytest and its tools; plot: the curves `make eval` draws.
	$(PY) -m pip install --quiet -e ".[test,plot]"
	touch $@

install: $(STAMP)

run: install
	$(VENV)/bin/verbatim serve

browser:
	bash scripts/install-browser.sh

# Everything: lint, types, the fast suite and the slow one (real model, Chromium, real app),
# a wheel installed without extras, and the quality gate. A bare `pytest` is the fast suite.
test: install browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/typecheck.py
	$(PY) -m pytest -m "" -n 0
	bash scripts/check-install.sh
	$(VENV)/bin/verbatim eval eval/seeds.jsonl --corpus corpus --gate

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: install
	$(PY) scripts/typecheck.py

# Build the wheel, install it without extras in a fresh environment, ingest and serve.
install-check:
	bash scripts/check-install.sh

fix: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

# Both public benchmarks; each also asks the other's questions as off-topic (the cross-domain
# abstention check). Reports (JSON per question, PNG curves) go to eval/reports/.
BENCH := ../shared/benchmarks
eval: install
	$(VENV)/bin/verbatim eval eval/seeds.jsonl --corpus corpus --folds 5 --json eval/reports/seeds.json
	$(VENV)/bin/verbatim eval $(BENCH)/counselchat/questions.dev.jsonl \
		--corpus $(BENCH)/counselchat/corpus.jsonl \
		--offtopic $(BENCH)/squad2/questions.dev.jsonl --folds 5 --json eval/reports/counselchat.json
	$(VENV)/bin/verbatim eval $(BENCH)/squad2/questions.dev.jsonl \
		--corpus $(BENCH)/squad2/corpus.jsonl \
		--offtopic $(BENCH)/counselchat/questions.dev.jsonl --folds 5 --json eval/reports/squad2.json

# Real documentation from Debian -doc packages, asked the way users ask (eval/questions/README.md).
# A package is installed (needs root and the Debian archive) only when its folder is missing.
DOCS_FAQ := /usr/share/doc/debian/FAQ
DOCS_MG := /usr/share/doc/maint-guide/maint-guide.en.pdf
DOCS_REF := /usr/share/debian-reference
eval-docs: install
	test -d $(DOCS_FAQ) || apt-get install -y --no-install-recommends debian-faq
	test -f $(DOCS_MG) || apt-get install -y --no-install-recommends maint-guide
	test -d $(DOCS_REF) || apt-get install -y --no-install-recommends debian-reference-en
	$(VENV)/bin/verbatim eval eval/questions/debian-faq.jsonl --corpus $(DOCS_FAQ) \
		--json eval/reports/debian-faq.json
	$(VENV)/bin/verbatim eval eval/questions/maint-guide.jsonl --corpus $(DOCS_MG) \
		--json eval/reports/maint-guide.json
	$(VENV)/bin/verbatim eval eval/questions/debian-reference.jsonl --corpus $(DOCS_REF) \
		--json eval/reports/debian-reference.json

# Speed against the bare model call and against txtai (a benchmark-only extra).
# Each tuned ranking/quoting constant fitted on 4 folds and scored on the fifth (bench/cv.py).
cv: install
	$(PY) -m bench.cv --benchmarks $(BENCH) --folds 5 --json eval/reports/cv.json

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m bench.speed --benchmarks $(BENCH) --json eval/reports/bench.json

# Ingest and search time and memory at 10k, 100k and 1M passages (synthetic vectors).
scale: install
	$(PY) -m bench.scale --benchmarks $(BENCH) --json eval/reports/scale.json $(if $(SIZES),--sizes $(SIZES))

stress: install
	$(PY) -m bench.stress --json eval/reports/stress.json

# Known vulnerabilities in the locked dependencies (needs the PyPI JSON API or OSV online).
audit: install
	$(PY) -m pip install --quiet pip-audit
	$(VENV)/bin/pip-audit --no-deps --disable-pip -r requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
