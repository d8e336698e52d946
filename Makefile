# The two commands a new user runs: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEV     := $(VENV)/.installed-dev

.PHONY: install install-dev demo test test-quick bench bench-quick screenshots lint typecheck clean

## What the demo needs: digest and its dependencies (no PyTorch).
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

## What the checks need besides: the test tools, and the optional sentence model's stack, PyTorch's CPU
## build first (2.13.0 lies on this kind of machine; a plain `pip install torch` may fetch a CUDA build).
install-dev: $(DEV)

$(DEV): $(STAMP)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV)

## Runs the real daily job on the bundled sample snapshots into a local Maildir (var/outbox).
demo: install
	$(BIN)/digest run --config config/digest.toml
	@echo
	@echo "Mail delivered to: $(CURDIR)/var/outbox (Maildir; open with 'mutt -f var/outbox' or read var/outbox/new/*)"
	@echo "The reader's web app on the demo database (sign-up, manage, one-click unsubscribe):"
	@echo "  DIGEST_SECRET_KEY=\$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))') DIGEST_BASE_URL=http://127.0.0.1:8000 \\"
	@echo "    $(BIN)/digest serve --config config/digest.toml    # then open http://127.0.0.1:8000/"

## Every check: lint, types, tests. The tests run in JOBS processes (pytest-xdist): most of them wait on
## sockets, processes and fsync rather than on a core, so twice the cores keeps both busy.
JOBS ?= 4

test: install-dev lint typecheck
	$(BIN)/python -m pytest -q -n $(JOBS)

## The tests that stay in one process (everything but the real process kills, locks, worker processes,
## several hosts and the browser): what a developer runs between edits.
test-quick: install-dev
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not processes"

lint: install-dev
	$(BIN)/ruff check digest tests bench docs
	$(BIN)/ruff format --check digest tests bench docs

typecheck: install-dev
	$(BIN)/mypy

## Times real runs at 1,000 / 10,000 / 100,000 subscribers, into a Maildir and over SMTP into Postfix's
## smtp-sink (Debian's postfix package, installed if missing and possible; else aiosmtpd), beside the
## straightforward pipeline; then how a Maildir batch is made durable, and SMTP PIPELINING behind added
## latency; the cost of followed authors, categories, section caps, upvotes and updates at 100,000 readers
## (signals.py); then `digest serve` under wrk (Debian's package, installed if missing), alone and beside a
## 100,000-subscriber run. Prints tables.
SINK_INSTALL = test -x /usr/sbin/smtp-sink || (echo "postfix postfix/main_mailer_type select No configuration" \
	| debconf-set-selections && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	--no-install-recommends postfix) || echo "smtp-sink not installed: the SMTP run uses aiosmtpd"

WRK_INSTALL = command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends wrk)

## The phase table (where a day's time goes) of this commit and PHASES_AGAINST alternately; the speed guard.
PHASES_AGAINST ?= a58f126

bench: install-dev
	-$(SINK_INSTALL)
	-$(WRK_INSTALL)
	cd bench && ../$(BIN)/python guard.py
	cd bench && ../$(BIN)/python phases.py --against $(PHASES_AGAINST)
	cd bench && ../$(BIN)/python phases.py --sizes 20000 --declared
	cd bench && ../$(BIN)/python phases.py --sizes 20000 --hybrid
	cd bench && ../$(BIN)/python relevance.py --minilm --wordllama
	cd bench && ../$(BIN)/python findings.py
	cd bench && ../$(BIN)/python signals.py
	cd bench && ../$(BIN)/python run_day.py
	cd bench && ../$(BIN)/python fsync.py
	cd bench && ../$(BIN)/python dkim_signing.py
	cd bench && ../$(BIN)/python schedule_wake.py
	cd bench && ../$(BIN)/python rekey.py
	cd bench && (test -x /usr/sbin/smtp-sink && ../$(BIN)/python pipelining.py || echo "pipelining.py needs smtp-sink")
	cd bench && (command -v wrk >/dev/null && ../$(BIN)/python web.py || echo "web.py needs wrk")
	cd bench && (test -x /usr/lib/postgresql/15/bin/initdb && ../$(BIN)/python postgresql.py || echo "postgresql.py needs Debian's postgresql")

## The speed guard: 5,000 readers against the straightforward pipeline in the same run, beside the ratio
## committed in docs/benchmarks.md; exit 1 when it fell by more than a fifth. Under a minute.
bench-quick: install-dev
	cd bench && ../$(BIN)/python guard.py

## Renders sample digests in headless Chromium (Debian's package, installed if missing) into docs/screenshots/.
screenshots: install-dev
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends chromium)
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
