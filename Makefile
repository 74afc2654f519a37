# Myelin: build a board's SD card image and signed update with a pinned Buildroot.
#
#   make <board>_defconfig   select a board (fetches the pinned Buildroot the first time)
#   make                     build it: output/<board>/images/<board>.img and <board>.fw
#   make help                the boards and the targets
#
#   BUILDROOT=DIR            use this Buildroot checkout (of the pinned commit) instead of the cache
#   BUILDROOT_GIT=URL        clone the pinned Buildroot from this URL (a mirror) instead
#   MYELIN_CACHE=DIR         where Buildroot and the downloads are cached (~/.cache/myelin)
#
# scripts/qemu boots Myelin's x86_64 image in QEMU without Buildroot at all.
#
# Any other target (menuconfig, linux-menuconfig, savedefconfig, clean, <pkg>-rebuild, ...) is
# passed to Buildroot for the selected board. Plain Buildroot works too:
#   make -C /path/to/buildroot BR2_EXTERNAL=$PWD rpi4_defconfig

# The Buildroot release this tree is tested with, and the commit of that tag in Buildroot's
# official git: the commit is checked after the clone, so a moved tag or a tampered mirror is
# refused (a git commit id pins the whole tree, as a tarball's sha256 would).
BUILDROOT_VERSION = 2026.05.1
BUILDROOT_COMMIT = cb857ba4c87a93e5265a9e4a3f32071abf39e14a
BUILDROOT_GIT ?= https://gitlab.com/buildroot.org/buildroot.git

MYELIN_CACHE ?= $(HOME)/.cache/myelin
BUILDROOT ?= $(MYELIN_CACHE)/buildroot-$(BUILDROOT_VERSION)
OUTPUT ?= $(CURDIR)/output
# Downloads are shared by every board and every Buildroot version.
export BR2_DL_DIR ?= $(MYELIN_CACHE)/dl

BOARDS := $(sort $(patsubst configs/%_defconfig,%,$(wildcard configs/*_defconfig)))
BOARD_FILE := $(OUTPUT)/.board
BOARD ?= $(shell cat $(BOARD_FILE) 2>/dev/null)

BR_MAKE = $(MAKE) -C $(BUILDROOT) O=$(OUTPUT)/$(BOARD) BR2_EXTERNAL=$(CURDIR)

.DEFAULT_GOAL := all
.PHONY: all help buildroot check-external check-board print-buildroot

all: check-board buildroot
	$(BR_MAKE)
	@echo
	@echo "Images: $(OUTPUT)/$(BOARD)/images/$(BOARD).img and $(BOARD).fw"

help:
	@echo "Myelin, a Rust-supervised embedded Linux (Buildroot $(BUILDROOT_VERSION))"
	@echo
	@echo "Boards:"
	@$(foreach b,$(BOARDS),echo "  make $(b)_defconfig";)
	@echo
	@echo "Then:"
	@echo "  make                  build output/<board>/images/<board>.img and <board>.fw"
	@echo "  make menuconfig       (or any Buildroot target) for the selected board"
	@echo "  make check-external   check the tree against the pinned Buildroot"
	@echo
	@echo "Where Buildroot comes from (cloned once into $(BUILDROOT)):"
	@echo "  make BUILDROOT=DIR ...      use your checkout of Buildroot $(BUILDROOT_VERSION)"
	@echo "  make BUILDROOT_GIT=URL ...  clone it from a mirror (default $(BUILDROOT_GIT))"
	@echo
	@echo "Try Myelin without building: scripts/qemu boots the x86_64 image in QEMU"
	@echo "(a shell on the console, ssh -p 2222 root@localhost; see scripts/qemu --help)."
	@echo
	@echo "Selected board: $(if $(BOARD),$(BOARD),none)"

buildroot:
	@$(CURDIR)/scripts/fetch-buildroot "$(BUILDROOT)" "$(BUILDROOT_VERSION)" \
		"$(BUILDROOT_COMMIT)" "$(BUILDROOT_GIT)" || { \
		echo; \
		echo "Myelin needs Buildroot $(BUILDROOT_VERSION) (commit $(BUILDROOT_COMMIT)). Either:"; \
		echo "  make BUILDROOT=/path/to/buildroot ...   use a checkout of it you already have"; \
		echo "  make BUILDROOT_GIT=<url> ...            clone it from a mirror you can reach"; \
		echo "or try Myelin without building: scripts/qemu (QEMU, from Debian packages)."; \
		exit 1; } >&2

# Where the pinned Buildroot is (products' Makefiles ask; see scripts/new-product).
print-buildroot:
	@echo $(BUILDROOT)

check-external: buildroot
	$(CURDIR)/scripts/check-external BUILDROOT=$(BUILDROOT)

check-board:
	@if [ -z "$(BOARD)" ]; then \
		echo "No board selected. Choose one: $(foreach b,$(BOARDS),make $(b)_defconfig;)" | sed 's/;$$//' >&2; \
		exit 1; \
	fi
	@if ! echo " $(BOARDS) " | grep -q " $(BOARD) "; then \
		echo "Unknown board '$(BOARD)'. Boards: $(BOARDS)" >&2; \
		exit 1; \
	fi

%_defconfig:
	@if ! echo " $(BOARDS) " | grep -q " $* "; then \
		echo "Unknown board '$*'. Boards: $(BOARDS)" >&2; \
		echo "Each board is a configs/<board>_defconfig; see README.md to add one." >&2; \
		exit 1; \
	fi
	@$(MAKE) --no-print-directory buildroot
	$(MAKE) -C $(BUILDROOT) O=$(OUTPUT)/$* BR2_EXTERNAL=$(CURDIR) $*_defconfig
	@mkdir -p $(OUTPUT)
	@echo $* > $(BOARD_FILE)
	@echo "Board $* selected; now run 'make'."

# Everything else goes to Buildroot, for the selected board.
Makefile: ;
%: check-board buildroot
	$(BR_MAKE) $@
