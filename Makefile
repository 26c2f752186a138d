# Minimeter: `make demo` and `make test` each bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-stores bench lint typecheck clean report-screenshot test-engines bench-engines flink-up flink-down spark-up spark-down clean-engines

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/minimeter demo

test: $(STAMP)
	$(BIN)/pytest

# Whole runs with --out in S3 (moto's S3 server, started by the tests; tests_stores/, outside the
# testpaths of `make test`: each run costs minutes, Beam's S3 file system making a boto3 client
# per call).
test-stores: $(STAMP)
	$(BIN)/pytest tests_stores

# Full-page screenshot of the demo's report in headless Chromium (apt-get installs it if missing):
# out/demo/report-screenshot.png and its tiles report-screenshot-NN.png. Run make demo first.
report-screenshot: $(STAMP)
	$(BIN)/python scripts/report_screenshot.py out/demo/run/_report/index.html --out out/demo/report-screenshot.png

# Local engine clusters (scripts/engines/, versions in scripts/engines/versions.env); tool venvs and
# Beam's job-server jars are fetched once into .cache/engines. Java 11+ and Maven are needed.
ENGINES := scripts/engines

flink-up:
	bash $(ENGINES)/flink.sh up

flink-down:
	bash $(ENGINES)/flink.sh down

spark-up:
	bash $(ENGINES)/spark.sh up

spark-down:
	bash $(ENGINES)/spark.sh down

# Minimeter's job on Flink and on Spark compared with FnApiRunner (tests_engines/, outside the
# testpaths of `make test`); each engine's cluster is started and stopped by its tests.
test-engines: $(STAMP)
	$(BIN)/pytest tests_engines

bench-engines: $(STAMP)
	$(BIN)/python benchmarks/bench_engines.py

clean-engines:
	-bash $(ENGINES)/flink.sh down
	-bash $(ENGINES)/spark.sh down
	rm -rf .cache/engines

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cms.py
	$(BIN)/python benchmarks/bench_trust_cost.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_runner_ceiling.py
	$(BIN)/python benchmarks/bench_engines.py

lint: $(STAMP)
	$(BIN)/ruff check pipelines tests tests_engines tests_stores benchmarks scripts
	$(BIN)/ruff format --check pipelines tests tests_engines tests_stores benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy pipelines/minimeter

clean:
	rm -rf $(VENV) out .pytest_cache
