# Two entry points (README): `make demo` and `make test`. Both install what
# they need first (tools/setup.sh is idempotent and quick when all is there);
# the demo only the .venv with the project, the tests everything.
PY := .venv/bin/python

.PHONY: setup setup-demo test lint pytest mp mp-cycle mpy freeze demo clean

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

clean:
	rm -rf .venv .mp .pytest_cache .ruff_cache
