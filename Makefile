# Two entry points (README): `make demo` and `make test`. Both install what
# they need first (tools/setup.sh is idempotent and quick when all is there);
# the demo only the .venv with the project, the tests everything.
PY := .venv/bin/python

.PHONY: setup setup-demo test lint pytest mp mp-cycle mpy freeze demo fuzz fuzz-corpus clean

setup:
	@sh tools/setup.sh test

setup-demo:
	@sh tools/setup.sh demo

lint: setup
	$(PY) -m ruff check ipa_core ipa_host tests tools boards

pytest: setup
	$(PY) -m pytest

mp: setup
	$(PY) tools/mp_test.py

mp-cycle: setup
	$(PY) tools/mp_cycle.py --max-heap 65536
	$(PY) tools/mp_cycle.py --board rp2040_sim7600 --stack simcom,sim7080 --max-heap 65536

mpy: setup
	$(PY) tools/mpy_size.py

freeze: setup
	$(PY) tools/freeze.py --all

test: setup
	$(PY) -m ruff check ipa_core ipa_host tests tools boards
	$(PY) -m pytest
	$(PY) tools/mp_test.py
	$(PY) tools/mp_cycle.py --max-heap 65536
	$(PY) tools/mp_cycle.py --board rp2040_sim7600 --stack simcom,sim7080 --max-heap 65536
	$(PY) tools/mpy_size.py
	$(PY) tools/freeze.py --all

demo: setup-demo
	$(PY) tools/demo.py $(DEMO_ARGS)

# Fuzz every target of tests/fuzz/targets.py for FUZZ_SECONDS each (docs/resilience.md,
# "Hostile input"). atheris
# (coverage-guided) where PyPI has a wheel for this CPython, else the mutational loop of
# tests/fuzz/run.py; findings go to .fuzz/findings/ and the run exits 1.
FUZZ_SECONDS ?= 20
fuzz: setup
	@$(PY) -c "import atheris" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check "atheris>=2.3" \
		|| echo "fuzz: atheris does not install here; the mutational loop runs instead"
	$(PY) tests/fuzz/run.py --seconds $(FUZZ_SECONDS) $(if $(FUZZ_TARGETS),--only $(FUZZ_TARGETS))

# Regenerate tests/fuzz/corpus/ from the simulators' traffic (commit the result).
fuzz-corpus: setup
	$(PY) tests/fuzz/make_corpus.py

clean:
	rm -rf .venv .mp .pytest_cache .ruff_cache .fuzz
