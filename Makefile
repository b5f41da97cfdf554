# The two commands of the README, and the wheelhouse for rooms without network. Everything else is `workbook --help`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Offline: when wheelhouse/ holds wheels (`make wheelhouse`), installs use it and no package index at all.
WHEELHOUSE ?= wheelhouse
OFFLINE     = $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE))
# Other machines of the room: e.g. PLATFORMS="win_amd64 macosx_11_0_arm64 manylinux2014_aarch64" PYTHONS="3.11 3.12"
PLATFORMS ?=
PYTHONS   ?= $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

.PHONY: lab test wheelhouse clean-state

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: run make PYTHON=python3.11 …")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(OFFLINE) --upgrade pip
	$(BIN)/python -m pip install --quiet $(OFFLINE) -e '.[notebooks,test]'
	@touch $(STAMP)

lab: $(STAMP)  ## start the embedded PostgreSQL, seed if needed, open JupyterLab
	$(BIN)/workbook lab

test: $(STAMP)  ## unit tests + every notebook executed headless at scale tiny
	WORKBOOK_SCALE=tiny $(BIN)/workbook seed --if-needed
	WORKBOOK_SCALE=tiny $(BIN)/python -m pytest

# Every wheel an install needs, the build backend included (an offline `pip install -e .` builds with setuptools),
# listed from pyproject.toml; binary wheels only, so nothing has to be compiled in the room.
wheelhouse:  ## download the wheels for this machine (and PLATFORMS × PYTHONS) into wheelhouse/
	@mkdir -p $(WHEELHOUSE)
	@$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); extras = p["project"]["optional-dependencies"]; print("\n".join(["pip", *p["build-system"]["requires"], *p["project"]["dependencies"], *extras["notebooks"], *extras["test"]]))' > $(WHEELHOUSE)/requirements.txt
	$(PYTHON) -m pip download --quiet --only-binary=:all: --dest $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	for platform in $(PLATFORMS); do for python in $(PYTHONS); do \
	  $(PYTHON) -m pip download --quiet --only-binary=:all: --platform $$platform --python-version $$python \
	    --dest $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt || exit 1; done; done
	@echo "$$(ls $(WHEELHOUSE)/*.whl | wc -l) wheels in $(WHEELHOUSE)/ ($$(du -sh $(WHEELHOUSE) | cut -f1)); make lab and make test now install from it, offline"

clean-state:  ## stop the embedded server and delete its data (the dataset is regenerated on next use)
	-$(BIN)/workbook db stop
	rm -rf .workbook build
