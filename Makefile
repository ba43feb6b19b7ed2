# Onramp. The README's two commands are `make run` and `make test`; both set
# up everything they need on a fresh Debian 12 machine, idempotently.

SHELL      := /bin/bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TAGS       := desktop,production,webkit2_41
BIN        := build/bin/onramp
SIM        := build/bin/talossim
WAILS      := build/bin/wails
DATA       ?= $(HOME)/.local/share/onramp
LISTEN     ?= 127.0.0.1:8080

# Debian packages: build (cgo, GTK, WebKitGTK 4.1), tests' real peers, the
# virtual lab, the browser for end-to-end tests.
APT_PACKAGES := build-essential pkg-config libgtk-3-dev libwebkit2gtk-4.1-dev libssl-dev \
	xvfb xauth x11-utils chromium \
	iproute2 curl tftp-hpa tftpd-hpa udhcpc isc-dhcp-client kea-dhcp4-server kea-admin \
	tshark nginx-light ndisc6 socat netcat-openbsd age atftp efitools mtools dosfstools xorriso \
	qemu-system-x86 ovmf ipxe swtpm swtpm-tools busybox-static cpio sbsigntool

## dev: live-reloading development window (Wails CLI; frontend via Vite)
dev: setup wails-cli
	$(WAILS) dev -tags webkit2_41

.PHONY: dev all run serve build talossim test test-go test-lab test-fuzz test-frontend e2e e2e-visit lint bench soak clean setup deps-apt deps-npm wails-cli frontend

all: build

## setup: everything the other targets need (idempotent, quick when done)
setup: deps-apt deps-npm

deps-apt:
	@bash build/setup-apt.sh $(APT_PACKAGES)

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

deps-npm: frontend/node_modules/.installed

## wails-cli: the Wails v2.9.2 CLI, built from build/wails-cli (pins x/tools)
$(WAILS): build/wails-cli/go.mod build/wails-cli/go.sum
	cd build/wails-cli && $(GO) build -o ../bin/wails github.com/wailsapp/wails/v2/cmd/wails

wails-cli: $(WAILS)

frontend: deps-npm
	cd frontend && npm run build
	@touch frontend/dist/.gitkeep

## build: the desktop binary (Wails, WebKitGTK 4.1) with the UI embedded, and
## beside it the static Talos node simulator the virtual lab's guests run
build: setup frontend talossim
	CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) .

talossim:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(SIM) ./lab/sim/cmd/talossim

## run: the app. A window when there is a display, else the web UI on $(LISTEN).
run: build wails-cli
	$(BIN) --data $(DATA) --listen $(LISTEN)

## serve: the web/kiosk face only
serve: build
	$(BIN) serve --data $(DATA) --listen $(LISTEN)

## test: Go tests (race; real peers in private namespaces), the virtual lab end to
## end, short fuzz runs, frontend unit tests and type checks, the UI in Chromium,
## the desktop window under Xvfb, and the whole visit in Chromium on the lab
test: build wails-cli test-go test-lab test-fuzz test-frontend e2e e2e-visit

test-go:
	$(GO) vet ./...
	$(GO) test -race -timeout 25m ./...

## test-lab: QEMU guests (UEFI+TPM, BIOS, SecureBoot site keys, SecureBoot vendor
## keys) netboot from `onramp netboot` into the Talos node simulator; then the
## app's own Lab → Site → Install → Verify flow on a fresh lab
test-lab: build
	ONRAMP_LAB_E2E=1 ONRAMP_BIN=$(CURDIR)/$(BIN) ONRAMP_TALOSSIM=$(CURDIR)/$(SIM) ONRAMP_BENCH_LAB_JSON=$(CURDIR)/build/bench/lab.json \
	  $(GO) test -count=1 -timeout 15m -run '^(TestNetbootOnramp|TestLabInstallVerify|TestSecureBootEnrollment|TestSecureBootEnrollmentHTTPBoot|TestSecureBootEnrollmentOnramp)$$' -v ./lab/ 2>&1 | \
	  grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|e2e_test.go' ; test $${PIPESTATUS[0]} -eq 0
	ONRAMP_LAB_E2E=1 ONRAMP_BIN=$(CURDIR)/$(BIN) ONRAMP_TALOSSIM=$(CURDIR)/$(SIM) \
	  $(GO) test -count=1 -timeout 15m -run '^TestInstallLabE2E$$' -v ./app/ 2>&1 | \
	  grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|e2e_test.go' ; exit $${PIPESTATUS[0]}

## test-fuzz: every fuzz target for a short, fixed number of executions (a count,
## not a duration: go.dev/issue/75804 fails duration runs at the deadline)
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime 200000x ./netboot/dhcp
	$(GO) test -run '^$$' -fuzz '^FuzzSanitize$$' -fuzztime 200000x ./netboot/tftp
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime 200000x ./netboot/tftp
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime 200000x ./netboot/ipxe
	$(GO) test -run '^$$' -fuzz '^FuzzParseSite$$' -fuzztime 5000x ./talos
	$(GO) test -run '^$$' -fuzz '^FuzzDiskSelector$$' -fuzztime 5000x ./talos
	$(GO) test -run '^$$' -fuzz '^FuzzParseCmdline$$' -fuzztime 100000x ./lab/sim
	$(GO) test -run '^$$' -fuzz '^FuzzParseKmsg$$' -fuzztime 100000x ./talos/events
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime 20000x ./talos/handoff
	$(GO) test -run '^$$' -fuzz '^FuzzParseSignatureLists$$' -fuzztime 50000x ./secureboot
	$(GO) test -run '^$$' -fuzz '^FuzzParseVarStore$$' -fuzztime 50000x ./secureboot
	$(GO) test -run '^$$' -fuzz '^FuzzParseAuthVariable$$' -fuzztime 50000x ./secureboot

test-frontend: deps-npm
	cd frontend && npm run check && npm test

e2e: build
	bash build/e2e.sh

## e2e-visit: the whole visit (Site … Report) in headless Chromium against the
## virtual lab (root, QEMU; skips otherwise). 1–3.5 min on 2 cores. Strict: a
## Discover page that goes stale fails it.
e2e-visit: build
	ONRAMP_VISIT_STRICT=1 BIN=$(BIN) TALOSSIM=$(SIM) bash build/visit-e2e.sh

lint: deps-npm
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd frontend && npm run check

## bench: Onramp vs Kea (perfdhcp), tftpd-hpa and nginx in private namespaces,
## plus rack boot and resource use; a table of ratios and build/bench/latest.json.
## BENCH_ARGS=-quick for a short run. The virtual lab column comes from the last
## `make test-lab` (build/bench/lab.json).
bench: build
	bash build/bench.sh -onramp $(BIN) $(BENCH_ARGS)

## soak: every fuzz target for FUZZTIME (default 60s), then the long reliability suite
soak: setup
	bash build/soak.sh

clean:
	rm -rf build/bin build/e2e build/bench frontend/node_modules
	find frontend/dist -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true
