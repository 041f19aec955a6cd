# Two commands on a fresh machine: `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

SCRATCH := $(CURDIR)/../fraudops-notebook-run

.PHONY: run test install lint format benchmark notebooks clean

run: install  ## set up and run the whole pipeline on the built-in data
	dvc repro
	@echo
	@echo "Done. Metrics: reports/metrics.json (dvc metrics show)"
	@echo "      Executed notebooks: reports/*.ipynb   Figures: reports/figures/"
	@echo "      Model: models/model.skops with its card models/model.json"
	@dvc metrics show reports/metrics.json

test: install  ## all tests: unit, notebooks (nbval) and an end-to-end dvc repro
	pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

lint: install
	ruff check .
	ruff format --check .

format: install
	ruff format .
	ruff check --fix .

notebooks: install  ## rerun the pipeline from scratch and store the checked outputs in notebooks/
	rm -rf $(SCRATCH) && mkdir -p $(SCRATCH)
	git ls-files --cached --others --exclude-standard | while read -r f; do \
		[ -f "$$f" ] && mkdir -p "$(SCRATCH)/$$(dirname "$$f")" && cp "$$f" "$(SCRATCH)/$$f"; done; true
	cd $(SCRATCH) && git init -q && git add -A && git -c user.name=scratch -c user.email=scratch@localhost commit -qm scratch && dvc repro
	fraudops refresh-notebooks --from $(SCRATCH)/reports
	rm -rf $(SCRATCH)

benchmark: install  ## speed, memory and model-choice measurements (not part of the tests), then their tables
	python benchmarks/run.py
	python benchmarks/model_choice.py
	python benchmarks/scoring.py
	python benchmarks/summary.py

clean:
	rm -rf $(VENV)
