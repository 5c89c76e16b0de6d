# One-command entry points; the README's first lines name `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
RUN := PATH=$(abspath $(BIN)):$$PATH
CORES ?= 2

.PHONY: install demo test lint clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## demo: install, then run the whole pipeline on synthetic phantoms (no network, CPU, a few minutes)
demo: install
	$(RUN) snakemake all --cores $(CORES) --configfile config/demo.yaml
	$(RUN) snakemake --cores $(CORES) --configfile config/demo.yaml --report results/report.html
	@echo "report: $(abspath results/report.html) (open it in a browser; the run summary is above)"

## test: the test suite (the same command CI runs)
test: install
	$(RUN) python -m pytest

lint: install
	$(RUN) snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf results resources/demo
