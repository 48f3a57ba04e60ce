# shipyard.webstack — developer entry points. Everything installs itself:
# a fresh machine needs only Python 3.11+ and Docker (or root on Debian, where
# the test bed installs Docker Engine itself).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# Caches that outlive a checkout (apt downloads for test hosts, debootstrap, sanity venvs).
CACHE := $(HOME)/.cache/shipyard-webstack
export SHIPYARD_CACHE ?= $(CACHE)

.PHONY: help venv testbed test unit functional lint sanity build molecule clean-hosts demo demo-down role-docs bench

help:
	@echo "make demo       the whole stack + the reference app on a throwaway local host; prints the URL"
	@echo "make demo-down  remove the demo host and its network"
	@echo "make test       run the whole suite (what CI runs), printing each stage's time"
	@echo "make venv       create .venv with the pinned tools"
	@echo "make testbed    make sure Docker answers; build the systemd test-host images"
	@echo "make unit | functional | lint | sanity | build | molecule   one stage"
	@echo "make bench      every benchmark (P1-P6), side by side; writes docs/benchmarks.md (~30 min)"
	@echo "make clean-hosts  remove every test host and network left by molecule"
	@echo "make role-docs  render roles/*/meta/argument_specs.yml into docs/roles/*.md (a unit test fails when stale)"

venv: $(VENV)/.stamp $(VENV)/site-packages .cache/collections/ansible_collections/shipyard/webstack

$(VENV)/.stamp: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	scripts/venv-install $(VENV)
	touch $@

# The venv's site-packages (community.docker & co.) under a name that does not carry the Python version.
$(VENV)/site-packages: $(VENV)/.stamp
	ln -sfn "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" $@

# The checkout, importable as ansible_collections/shipyard/webstack.
.cache/collections/ansible_collections/shipyard/webstack:
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

testbed: venv
	scripts/testbed all

test: venv
	scripts/run-tests

unit: venv
	STAGES=unit scripts/run-tests

functional: venv
	STAGES="testbed functional" scripts/run-tests

lint: venv
	STAGES="yamllint ansible-lint" scripts/run-tests

sanity: venv
	STAGES=sanity scripts/run-tests

build: venv
	STAGES=build scripts/run-tests

molecule: venv
	STAGES="testbed molecule" scripts/run-tests

clean-hosts:
	-docker rm -f $$(docker ps -aq --filter label=owner=shipyard-molecule) 2>/dev/null
	-docker network rm $$(docker network ls -q --filter label=owner=shipyard-molecule) 2>/dev/null

demo: venv
	scripts/demo up

demo-down: venv
	scripts/demo down

# The variables tables of docs/roles/*.md come from the argument specs (hand-written text is kept).
role-docs: venv
	$(VENV)/bin/python scripts/role-docs

bench: venv
	scripts/bench
