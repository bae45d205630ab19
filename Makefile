# hakube: pyinfra deploy of a highly-available kube-apiserver, plus its Docker lab.
# Run from the repository root.  `make help` lists the targets.

PY      := .venv/bin/python
MASTERS ?= 2
# apt-get needs root; use sudo when not already root
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
# stamp: the venv is (re)installed whenever pyproject.toml changes
VENV_STAMP := .venv/.hakube-installed

# no "Entering directory" chatter: `make lab-status` must print only JSON on stdout
MAKEFLAGS += --no-print-directory

.DEFAULT_GOAL := help
.PHONY: help .venv host-deps lab-up lab-down lab-status

help:
	@echo "make .venv        create/refresh the virtualenv (pip install -e '.[test]')"
	@echo "make host-deps    apt-get install the host tools the lab needs (if missing)"
	@echo "make lab-up       start the Docker lab (MASTERS=2|3, default 2)"
	@echo "make lab-down     remove the lab's containers and network"
	@echo "make lab-status   print the lab's state as JSON"

.venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -e '.[test]'
	touch $@

# tool:package pairs; `apt-get update` runs once, only when something is missing
HOST_TOOLS := debootstrap:debootstrap go:golang-go rsync:rsync dpkg-source:dpkg-dev

host-deps:
	@missing=""; \
	for pair in $(HOST_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then echo "host-deps: all present"; exit 0; fi; \
	echo "host-deps: installing$$missing"; \
	$(SUDO) apt-get update && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

lab-up: $(VENV_STAMP)
	$(PY) -m hakube.lab up --masters $(MASTERS)

lab-down:
	$(PY) -m hakube.lab down

lab-status:
	@$(PY) -m hakube.lab status

# lab, test, bench: maintained by the lead (not defined here yet).
