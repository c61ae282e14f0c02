# narun: `make demo` runs the whole stack, `make test` runs the whole suite.
# Both create the virtual environment on first use (Python >= 3.11 and pip are all you need).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.narun-installed

.PHONY: setup demo test check fmt bench soak fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv with narun and every dev/test dependency

demo: $(STAMP)  ## nats-server + gateway (:8080 HTTP, :8081 gRPC, :9090 metrics) + example consumers + a node
	$(PY) -m narun dev -c examples/demo.yaml \
		--serve hello=examples.hello.app:app \
		--serve goodbye=examples.goodbye.app:app \
		--serve items=examples.fastapi_items.app:app \
		--serve streaming=examples.streaming.app:app \
		--serve chat=examples.chat.app:app \
		--serve-grpc greeter-service=examples.grpc_hello.server:register \
		--node dev-1 \
		--banner examples/TRY.txt

test: $(STAMP)  ## the whole test suite against real nats-server, gateway and consumer processes
	$(PY) -m pytest

check: $(STAMP)  ## lint, format check, strict types
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## side-by-side benchmark, see docs/benchmarks.md (installs wrk, caddy, nginx if missing)
	@sh bench/tools.sh
	$(PY) -m bench.run

soak: $(STAMP)  ## 300,000 requests at saturation through the full path; RSS start/middle/end
	$(PY) -m bench.soak --requests $${SOAK_REQUESTS:-300000} --connections 64

fuzz: $(STAMP)  ## coverage-guided inputs into the Binary HTTP decoders, the NATS header reader and the gateway's HTTP front (atheris)
	$(PY) -m pip install --quiet -e '.[fuzz]'
	@echo "fuzzing the Binary HTTP decoders: $${FUZZ_RUNS:-1000000} runs (log: .fuzz.log)"
	@$(PY) -m fuzz.fuzz_bhttp -runs=$${FUZZ_RUNS:-1000000} -print_final_stats=1 > .fuzz.log 2>&1 \
		|| (tail -n 40 .fuzz.log; exit 1)
	@grep -E "^Done|stat::number_of_executed_units" .fuzz.log
	@echo "fuzzing the NATS header block reader: $${FUZZ_NATS_RUNS:-200000} runs (log: .fuzz-nats.log)"
	@$(PY) -m fuzz.fuzz_natsheaders -runs=$${FUZZ_NATS_RUNS:-200000} -print_final_stats=1 > .fuzz-nats.log 2>&1 \
		|| (tail -n 40 .fuzz-nats.log; exit 1)
	@grep -E "^Done|stat::number_of_executed_units" .fuzz-nats.log
	@echo "fuzzing the gateway's HTTP front: $${FUZZ_FRONT_RUNS:-20000} runs (log: .fuzz-front.log)"
	@$(PY) -m fuzz.fuzz_front -runs=$${FUZZ_FRONT_RUNS:-20000} -print_final_stats=1 > .fuzz-front.log 2>&1 \
		|| (tail -n 40 .fuzz-front.log; exit 1)
	@grep -E "^Done|stat::number_of_executed_units" .fuzz-front.log

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
