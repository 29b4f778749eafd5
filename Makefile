# citytwin: two commands on a fresh Debian machine.
#   make demo   generate the sample city, start the embedded PostGIS, import, serve :8000
#   make test   run the test suite against a PostGIS the tests start themselves
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test system venv viewer lint lint-js bench-import bench-locate bench-isolation bench-raster bench-tiles bench-sensors soak clean

system:
	@scripts/ensure-system

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

venv: system $(BIN)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

viewer: system node_modules/.installed

demo: venv viewer
	$(BIN)/twin demo

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: venv viewer
	@scripts/ensure-system --browser --redis
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc

lint: venv lint-js
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# ESLint (pinned in package.json) on the viewer's modules and the end-to-end driver.
lint-js: viewer
	npm run --silent lint

bench-import: venv
	@scripts/ensure-system --bench
	$(BIN)/python bench/import_bench.py

bench-locate: venv
	@scripts/ensure-system --bench
	$(BIN)/python bench/locate_bench.py

# WNTR, the peer of the isolation benchmark, goes into the venv for the benchmark only (it is
# no dependency of citytwin). wntr 1.5.0 imports six without declaring it: six is pinned too.
WNTR_PINS := wntr==1.5.0 six==1.17.0

bench-isolation: venv
	@scripts/ensure-system
	$(BIN)/pip install -q $(WNTR_PINS)
	$(BIN)/python bench/isolation_bench.py

# titiler, the peer of the raster benchmark, goes into the venv for the benchmark only (it is no
# dependency of citytwin). titiler.core 2.4.0 wants rio-tiler >=9.1,<10, which we have: pip adds
# titiler.core, geojson-pydantic and simplejson and changes nothing already installed.
TITILER_PINS := titiler.core==2.4.0

bench-raster: venv
	@scripts/ensure-system
	$(BIN)/pip install -q $(TITILER_PINS)
	$(BIN)/python bench/raster_bench.py

# tipg, the peer of the vector tile benchmark, goes into the venv for the benchmark only (it is no
# dependency of citytwin). tipg 1.6.1 takes our fastapi, starlette, pydantic, cql2 and morecantile
# as they are: pip adds tipg and the five below, pinned, and changes nothing already installed.
TIPG_PINS := tipg==1.6.1 asyncpg==0.32.0 ciso8601==2.4.1 cramjam==2.11.0 orjson==3.13.0 \
	starlette-cramjam==0.7.0

bench-tiles: venv
	@scripts/ensure-system
	$(BIN)/pip install -q $(TIPG_PINS)
	$(BIN)/python bench/tiles_bench.py

# Live-twin load: 10M readings to POST /sensors/readings against a plain COPY of the same rows,
# and alarm-to-SSE latency under that load. No peer to install: COPY is PostgreSQL's own.
bench-sensors: venv
	@scripts/ensure-system
	$(BIN)/python bench/sensors_bench.py

# A bounded soak of twin serve (20,000 mixed requests, 8 clients): statuses, latency, memory.
soak: venv
	@scripts/ensure-system
	$(BIN)/python bench/soak.py

clean:
	-$(BIN)/twin db stop
	rm -rf $(VENV) node_modules .twin sample-city
