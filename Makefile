# BYOK Chat: `make run` starts the product, `make test` checks it, `make bench` measures it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test bench lint format clean messages lock audit

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# requirements*.txt are locked with hashes (`make lock`); pip refuses any file whose hash is not listed.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(STAMP)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

# Re-lock after editing requirements.in / requirements-dev.in (pip-tools; keeps current pins where allowed).
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(DEV_STAMP)
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

# Known vulnerabilities in the locked dependencies (pip-audit asks the package registry's advisory data).
audit: $(DEV_STAMP)
	$(BIN)/pip-audit --progress-spinner off --require-hashes --disable-pip -r requirements-dev.txt

run: $(STAMP)
	$(BIN)/python -m project.envfile .env
	$(BIN)/python -m project.run

# mypy's Django plugin loads project.settings, which refuse to start without secrets unless DEBUG is on.
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

lint: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Refresh the zh-Hans catalogues from the code, then compile them (the .mo files are committed, so a
# fresh clone needs no gettext tools). Needs GNU gettext (xgettext, msgfmt).
MESSAGES_IGNORE := --ignore=.venv --ignore=var --ignore=tests --ignore=bench --ignore=screenshots --no-location --no-wrap
messages: $(DEV_STAMP)
	DEBUG=true $(BIN)/python manage.py makemessages -l zh_Hans $(MESSAGES_IGNORE)
	DEBUG=true $(BIN)/python manage.py makemessages -d djangojs -l zh_Hans $(MESSAGES_IGNORE)
	DEBUG=true $(BIN)/python manage.py compilemessages -l zh_Hans --ignore=.venv --ignore=var

clean:
	rm -rf $(VENV) var
