# The two commands of a fresh machine: `make demo` and `make test`.
# Both set up what they need first, once: a second run installs nothing.

VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.bin_perception-installed
SYSPY   ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO    ?= demo_out
# Test processes: many tests wait on other processes (DDS, trainers), so two share two cores well.
TEST_WORKERS ?= 2

export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export BIN_PERCEPTION_CACHE ?= $(CURDIR)/.cache/bin_perception

.PHONY: setup demo test lint constraints clean

setup: $(STAMP)

# From Debian: libusb-1.0-0, which open3d's wheel links against, libGL and GLib, which
# opencv-python's does, and the Fashion-MNIST files of the solver benchmarks and the
# low-resolution classifier.
DEBS := libusb-1.0-0 libgl1 libglib2.0-0 dataset-fashion-mnist

$(STAMP): setup.py setup.cfg package.xml constraints.txt
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	 [ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; }
	@[ -x $(PYTHON) ] || $(SYSPY) -m venv $(VENV)
	@# These exact releases come from this machine's disk; others would download gigabytes.
	$(PYTHON) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	@# Every extra, at the versions the suite last passed with (constraints.txt).
	$(PYTHON) -m pip install -q -c constraints.txt -e '.[sim,lowres,ros,test]'
	@touch $@

# The simulated camera, perception_node and a collecting client, over DDS on this machine.
# The first run trains the demo's model (a few minutes) and caches it; later runs reuse it.
demo: setup
	$(VENV)/bin/bin-perception demo --out $(DEMO)

# One thread each: every test worker's torch would otherwise start a thread per core, and the workers' threads
# then contend for the same cores (torch-heavy tests ran two to three times slower beside another worker).
test: setup lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: setup
	$(VENV)/bin/ruff check .

# Refreshed on purpose, after the suite has passed: the versions it passed with.
constraints: setup
	$(PYTHON) -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .cache $(DEMO)
