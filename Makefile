# unilab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_MENAGERIE := $(abspath ../shared/menagerie)
# Offline copies of the Menagerie models sit beside the checkout on this team's machines.
export MENAGERIE_ROOT ?= $(if $(wildcard $(SHARED_MENAGERIE)),$(SHARED_MENAGERIE),)

.PHONY: setup train test bench lint clean

$(BIN)/unilab: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0 || $(BIN)/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/unilab

setup: $(BIN)/unilab
	@# `source .venv/bin/activate` then also finds the offline Menagerie models (the README's commands rely on it).
	@if [ -n "$(MENAGERIE_ROOT)" ] && ! grep -q MENAGERIE_ROOT $(BIN)/activate; then \
		echo 'export MENAGERIE_ROOT=$${MENAGERIE_ROOT:-$(MENAGERIE_ROOT)}' >> $(BIN)/activate; fi

train: setup
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(BIN)/python -m unilab train --algo ppo --task allegro_inhand --sim mujoco

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/env_throughput.py --num-envs 256
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_throughput.py --algo ppo,appo
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/grasp_rate.py

lint: setup
	$(BIN)/ruff check unilab tests benchmarks
	$(BIN)/ruff format --check unilab tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info
