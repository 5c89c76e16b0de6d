# One-command entry points; the README's first lines name `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
RUN := PATH=$(abspath $(BIN)):$$PATH
CORES ?= 2

.PHONY: install demo test test-all lint lock clean-demo

install: $(VENV)/.installed

# exact versions from the lock, then the project itself (its declared ranges are already met)
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e ".[dev]"
	touch $@

## lock: re-resolve requirements.lock (the jobs) and requirements-dev.lock (everything) in a scratch venv
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet .
	{ sed -n '/^#/p' requirements.lock; .lock-venv/bin/pip freeze --exclude cxrdenoise; } > requirements.lock.new
	.lock-venv/bin/pip install --quiet ".[dev]"
	{ sed -n '/^#/p' requirements-dev.lock; .lock-venv/bin/pip freeze --exclude cxrdenoise; } > requirements-dev.lock.new
	mv requirements.lock.new requirements.lock && mv requirements-dev.lock.new requirements-dev.lock
	sed -i "s/^# requirements.lock sha256: .*/# requirements.lock sha256: $$(sha256sum requirements.lock | cut -d' ' -f1)/" workflow/envs/cxrdenoise.yaml
	rm -rf .lock-venv

## demo: install, then run the whole pipeline on synthetic phantoms (no network, CPU, a few minutes)
demo: install
	$(RUN) snakemake all --cores $(CORES) --configfile config/demo.yaml
	$(RUN) snakemake --cores $(CORES) --configfile config/demo.yaml --report results/report.html
	@echo "report: $(abspath results/report.html) (open it in a browser; the run summary is above)"

## test: the fast tier: every test not marked `slow` (the end-to-end Snakemake DAGs and multi-process training)
test: install
	$(RUN) python -m pytest -m "not slow"

## test-all: every test, the slow tier included (the command CI runs)
test-all: install
	$(RUN) python -m pytest

lint: install
	$(RUN) snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf results resources/demo
