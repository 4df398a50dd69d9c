.PHONY: help install format lint test test-fast demo

help:  ## show this help
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install torch (CPU-capable build) and the package with dev tools
	pip install torch==2.14.1 torchvision==0.29.1
	pip install -e ".[dev]"

format:  ## ruff format + autofix
	ruff format .
	ruff check --fix .

lint:  ## ruff lint and format check
	ruff check .
	ruff format --check .

test:  ## the whole suite (what CI runs)
	python -m pytest

test-fast:  ## skip the tests marked slow
	python -m pytest -m "not slow"

demo:  ## train and test on the synthetic demo data
	python -m slr.train experiment=demo
