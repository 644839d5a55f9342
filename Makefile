# The few commands a newcomer needs. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo serve test lint typecheck unit bench soak docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'  # 25.1 reads dependency groups
	$(BIN)/python -m pip install --quiet -e '.[cli,testing,postgres]' --group dev
	touch $(STAMP)

demo: $(STAMP) ## Walk through the return-request lifecycle on a SQLite file (demo.sqlite3)
	$(BIN)/python examples/demo.py

serve: $(STAMP) ## The reference shop on http://127.0.0.1:8000 (data in var/webshop; RESET=1 starts afresh)
	PYTHONPATH=examples $(BIN)/python -m webshop --data var/webshop $(if $(RESET),--reset)

test: lint typecheck unit ## ruff, mypy --strict, and pytest with branch coverage

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/ruff format --check src tests benchmarks examples docs

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

soak: $(STAMP) ## long reliability runs (and the stateful machine at 2,000 examples x 100 steps)
	RETOURAANVRAAG_SOAK=1 $(BIN)/python -m pytest -m soak -p no:cacheprovider
	RETOURAANVRAAG_SOAK=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_lifecycle_stateful.py

bench: $(STAMP) ## benchmarks: ratios against baselines run beside them
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python benchmarks/run.py

docs: $(STAMP) ## regenerate the generated pages of docs/, then build the site into site/
	$(BIN)/python -m retouraanvraag._docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .pytest_cache .ruff_cache demo.sqlite3 demo-mail
