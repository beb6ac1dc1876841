# Quick start (Debian 12, as root):  make demo   then   make test
.PHONY: demo test lint format bench setup

setup:
	scripts/setup-host.sh

demo:
	scripts/setup-host.sh
	scripts/demo.sh

test:
	scripts/run-tests.sh

lint:
	/opt/rootless/venv/bin/ruff check . && /opt/rootless/venv/bin/ruff format --check .

format:
	/opt/rootless/venv/bin/ruff format . && /opt/rootless/venv/bin/ruff check --fix .

bench:
	bench/run-all.sh
