# Set-up and the two everyday commands. Everything runs on the CPU.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test bench wheel-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

# The main job end to end on procedurally generated example tiles and the shipped model:
# scan -> per-sample reports (HTML + PDF) with the scores of invented example lab values.
demo: $(VENV)/.installed
	$(VENV)/bin/hemoscan example-tiles example-tiles
	$(VENV)/bin/hemoscan scan example-tiles --out scan-out --save-crops --save-overlays --export geojson
	$(VENV)/bin/hemoscan report scan-out --labs example-tiles/labs.json --out scan-out/report.html --pdf scan-out/report.pdf

test: $(VENV)/.installed
	$(PY) -m pytest

# The wheel installed in a fresh venv outside the checkout scans with the model it carries.
wheel-check:
	bash .ci/wheel_check

bench: $(VENV)/.installed
	$(PY) benchmarks/scan_throughput.py
