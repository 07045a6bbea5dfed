# `make run` and `make test` work on a machine with only Python 3.11+ and pip:
# each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run burst test lint bench clean imap-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the service: scheduler, workers, rq-dashboard (embedded Redis when REDIS_URL is unset)
	$(BIN)/feedstream run

burst: $(STAMP)  ## poll every feed once, finish, print a summary
	$(BIN)/feedstream run --burst

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint imap-server  ## pytest exits non-zero when no test ran, so an empty run fails too
	$(BIN)/pytest

# The IMAP tests run a private dovecot (Debian's dovecot-imapd). Install it when missing
# and possible (root with apt-get); otherwise those tests skip and say why.
imap-server:
	@if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing dovecot-imapd for the IMAP tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-imapd >/dev/null 2>&1 \
	  || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-imapd >/dev/null 2>&1; } \
	  || echo "dovecot-imapd could not be installed: the IMAP tests will skip"; \
	else echo "dovecot is missing and cannot be installed here (needs root and apt-get): the IMAP tests will skip"; fi

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## the figures in docs/ (design, quality, capacity, rules, push; needs ../shared/corpus beside the clone)
	$(BIN)/python bench/extraction.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/pipeline.py --plot docs/bench/throughput.png
	$(BIN)/python bench/polls.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/dedupe.py
	$(BIN)/python bench/newsletters.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/sitemaps.py
	$(BIN)/python bench/updates.py
	$(BIN)/python bench/capacity.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
