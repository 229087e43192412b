.PHONY: help install format lint typecheck test-fast test app demo bench
VENV ?= .venv
PY := $(VENV)/bin/python

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-10s %s\n", $$1, $$2}'

install: ## create .venv with torch, the project and test tools (+ chromium as root)
	VENV=$(VENV) bash scripts/setup.sh

format: ## ruff format + autofix
	$(VENV)/bin/ruff format dinosearch tests scripts streamlit_app.py
	$(VENV)/bin/ruff check --fix dinosearch tests scripts streamlit_app.py

lint: ## ruff
	$(VENV)/bin/ruff check dinosearch tests scripts streamlit_app.py

typecheck: ## mypy
	$(VENV)/bin/mypy dinosearch

test-fast: ## tests without the browser and real-data tests
	$(PY) -m pytest -q -m "not browser and not cxr"

test: ## the full suite, as CI runs it
	$(PY) -m pytest -q

demo: ## the main job on the bundled sample (untrained backbone here)
	$(VENV)/bin/dinosearch demo --weights random

app: ## open the app on built indexes
	$(VENV)/bin/streamlit run streamlit_app.py
