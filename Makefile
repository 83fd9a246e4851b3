# The two commands of a fresh machine: `make demo` and `make test`.
# Both set up what they need first, once: a second run installs nothing.

VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.bin_perception-installed
SYSPY   ?= python3
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO    ?= demo_out

export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export BIN_PERCEPTION_CACHE ?= $(CURDIR)/.cache/bin_perception

.PHONY: setup demo test clean

setup: $(STAMP)

# Debian's libusb-1.0-0 is what open3d's wheel links against.
$(STAMP): setup.py setup.cfg package.xml
	@ldconfig -p | grep -q 'libusb-1.0.so.0 ' || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libusb-1.0-0; }
	@[ -x $(PYTHON) ] || $(SYSPY) -m venv $(VENV)
	$(PYTHON) -m pip install -q -e '.[ros,test]'
	@touch $@

demo: setup
	$(VENV)/bin/bin-perception simulate --part nut --instances 3 --scenes 200 --seed 7 --workers 2 --out $(DEMO)/nut_n3.mcap --overwrite
	$(VENV)/bin/bin-perception inspect $(DEMO)/nut_n3.mcap --out $(DEMO)/nut_n3_contact_sheet.png

test: setup
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(VENV) .cache $(DEMO)
