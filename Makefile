# hakube: pyinfra deploy of a highly-available kube-apiserver, plus its Docker lab.
# Run from the repository root.  `make help` lists the targets.

PY      := .venv/bin/python
MASTERS ?= 2
OS      ?= trixie
NODES   ?= 0
# the lab's address family: ipv4, ipv6 (everything IPv6) or dual (IPv4 masters, an IPv4 and an IPv6 VIP)
FAMILY  ?= ipv4
# `make check`: the inventory to check, and extra arguments (ARGS=--json prints one JSON document)
INVENTORY ?= inventory.py
ARGS    ?=
# apt-get needs root; use sudo when not already root
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
# stamp: the venv is (re)installed whenever pyproject.toml changes
VENV_STAMP := .venv/.hakube-installed

# no "Entering directory" chatter: `make lab-status` must print only JSON on stdout
MAKEFLAGS += --no-print-directory

.DEFAULT_GOAL := help
.PHONY: help .venv host-deps lab lab-up lab-down lab-status check test test-unit test-lab bench

help:
	@echo "make lab          the main job: venv, images, apiserver build, lab up, deploy, health through the VIP"
	@echo "make test         unit tests and the lab's integration tests (Docker)"
	@echo "make .venv        create/refresh the virtualenv (pip install -e '.[test]')"
	@echo "make host-deps    apt-get install the host tools the lab and the unit tests need (if missing; starts no service)"
	@echo "make lab-up       start the Docker lab (MASTERS=2|3, default 2; OS=bookworm|trixie|mixed, default trixie; NODES=0|1; FAMILY=ipv4|ipv6|dual, default ipv4)"
	@echo "make lab-down     remove the lab's containers and network"
	@echo "make lab-status   print the lab's state as JSON"
	@echo "make check        read-only health and drift of INVENTORY (default inventory.py); ARGS=--json; exit 0/1/2"

.venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -e '.[test]'
	touch $@

# tool:package pairs; `apt-get update` runs once, only when something is missing. haproxy and
# keepalived are for the unit tests' `haproxy -c` / `keepalived -t`, prometheus for their `promtool check rules`
# / `promtool test rules` on the shipped alerts (they fail, not skip, with CI=true).
# Tools in /usr/sbin count as present for a non-root user too (it is not on their PATH).
HOST_TOOLS := debootstrap:debootstrap go:golang-go rsync:rsync dpkg-source:dpkg-dev \
              haproxy:haproxy keepalived:keepalived pgrep:procps promtool:prometheus

# Installing must start no daemon: without systemd as PID 1 (a container, a CI runner) the
# packages' postinst runs /etc/init.d/haproxy start through invoke-rc.d, which would leave a
# haproxy running. A policy-rc.d that answers 101 ("action forbidden") stops invoke-rc.d and
# deb-systemd-invoke from starting anything; it is put in place only if the host has none, and
# removed again whatever happens. (On a systemd host the units are still enabled for the next boot.)
POLICY_RC_D := /usr/sbin/policy-rc.d

host-deps:
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	for pair in $(HOST_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then echo "host-deps: all present"; exit 0; fi; \
	echo "host-deps: installing$$missing"; \
	made=""; trap '[ -z "$$made" ] || $(SUDO) rm -f $(POLICY_RC_D)' EXIT; trap 'exit 130' INT TERM HUP; \
	if [ ! -e $(POLICY_RC_D) ]; then \
	  made=1; printf '#!/bin/sh\n# hakube host-deps: start no service while installing\nexit 101\n' | \
	    $(SUDO) tee $(POLICY_RC_D) >/dev/null && $(SUDO) chmod 0755 $(POLICY_RC_D) || exit 1; \
	fi; \
	$(SUDO) apt-get update && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

lab-up: $(VENV_STAMP) host-deps
	$(PY) -m lab up --masters $(MASTERS) --os $(OS) --nodes $(NODES) --family $(FAMILY)

lab-down:
	$(PY) -m lab down

lab-status:
	@$(PY) -m lab status

# The main job on a fresh machine: everything is built or reused, then the deploy runs for real.
lab: $(VENV_STAMP) host-deps
	$(PY) -m lab up --masters $(MASTERS) --os $(OS) --nodes $(NODES) --family $(FAMILY)
	LAB_MASTERS=$(MASTERS) LAB_FAMILY=$(FAMILY) .venv/bin/pyinfra -y inventory.py deploy.py
	$(PY) -m lab health

# Day two: is the cluster what the deploy left, and does it serve? Changes nothing anywhere.
# Exit 0 healthy, 1 degraded, 2 broken. `make check ARGS=--json` prints one JSON document on stdout.
# The package's own command (`hakube check`, also `python -m hakube.check`): the same code.
check: $(VENV_STAMP)
	@.venv/bin/hakube check $(ARGS) $(INVENTORY)

# Unit tests (fast, no Docker), then the integration tests on the real lab (they bring it up).
test: $(VENV_STAMP) host-deps
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/integration -v -rs --durations=15

test-unit: $(VENV_STAMP)
	$(PY) -m pytest tests/unit -q

# Wall times on the lab (not part of `make test`): first apply, no-op, --dry, the floor, VIP failover,
# and planning 3 masters + 0/50/500 nodes on @fake (alone, without the lab: `.venv/bin/python -m bench plan_scale`).
# Prints a table, writes bench/results.json. BENCH_RUNS=5 runs per figure (default). Takes the lab lock.
bench: $(VENV_STAMP) host-deps
	$(PY) -m bench
