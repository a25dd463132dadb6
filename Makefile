# qsign: every target does its own set-up (idempotent) first.
VENV := .venv
PY := $(VENV)/bin/python
RUN_DIR := run

.PHONY: setup run test bench lint deb clean

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/card.py
	$(PY) bench/tokens.py
	$(PY) bench/ca.py
	$(PY) bench/agent.py
	$(PY) bench/portal_pades.py
	$(PY) bench/validation.py
	$(PY) bench/identity.py

lint: setup
	$(VENV)/bin/ruff check ground qsign firmware_sim agent ca portal validation tests bench
	$(VENV)/bin/mypy

deb: setup
	bash packaging/build-deb.sh

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
