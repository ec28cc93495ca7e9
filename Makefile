# Two commands: `make demo` and `make test`. Each sets up what it needs (virtualenv, packages, data).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint data bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,edge]'
	touch $(STAMP)

# Fashion-MNIST comes from the Debian package; without apt we say how to get it and carry on.
data:
	@bash scripts/get_data.sh

demo: $(STAMP)
	$(BIN)/kdistill demo --overwrite

test: $(STAMP) data
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP) data
	$(BIN)/python benchmarks/fashion_mnist_kd.py

clean:
	rm -rf runs .pytest_cache
