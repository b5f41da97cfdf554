# The two commands of the README. Everything else is `workbook --help`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: lab test clean-state

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: run make PYTHON=python3.11 …")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
	@touch $(STAMP)

lab: $(STAMP)  ## start the embedded PostgreSQL, seed if needed, open JupyterLab
	$(BIN)/workbook lab

test: $(STAMP)  ## unit tests + every notebook executed headless at scale tiny
	WORKBOOK_SCALE=tiny $(BIN)/workbook seed --if-needed
	WORKBOOK_SCALE=tiny $(BIN)/python -m pytest

clean-state:  ## stop the embedded server and delete its data (the dataset is regenerated on next use)
	-$(BIN)/workbook db stop
	rm -rf .workbook build
