GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/sitewitness/witness/cmd/internal/buildinfo.Version=$(VERSION)
PKGS      := ./...

RUNS      ?= 10
SEEDS     ?= 10000
SIM_FLAGS ?= -strict
LOADED_RUNS ?= 3

.PHONY: all build test check integration integration-loaded bench bench-failover bench-scale dashboards-check simulate proto dev deps clean compose-up compose-down compose-test

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

## test: unit tests with the race detector; installs what they start (PostgreSQL 15, BIND 9, a C compiler) when run as root, or says what to run
test:
	@bash .ci/install-deps test
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## integration: the failure scenarios on real processes in network namespaces (root; make deps)
integration:
	$(GO) test -tags integration -count=1 -timeout 30m -v ./integration/...

## integration-loaded: the scenarios LOADED_RUNS times (3) in a row while stress-ng keeps every core busy, as a slow machine would (root; make deps)
integration-loaded:
	@command -v stress-ng >/dev/null || { echo "integration-loaded needs stress-ng: make deps"; exit 1; }
	@stress-ng --cpu $$(nproc) --timeout 0 >/dev/null 2>&1 & hog=$$!; \
	trap 'kill $$hog 2>/dev/null; wait $$hog 2>/dev/null' EXIT INT TERM; \
	rc=0; summary=""; \
	for i in $$(seq $(LOADED_RUNS)); do \
		start=$$(date +%s); \
		if $(GO) test -tags integration -count=1 -timeout 30m -v ./integration/...; then r=pass; else r=FAIL; rc=1; fi; \
		summary="$$summary loaded run $$i: $$r in $$(( $$(date +%s) - start ))s\n"; \
	done; \
	printf "$$summary"; exit $$rc

## bench-failover: time to fail over a lost site, RUNS times per variant (root; make deps)
bench-failover:
	$(GO) run ./integration/cmd/bench-failover -runs $(RUNS)

## dashboards-check: every dashboard query and alert expression against a real Prometheus scraping `witnessd dev` through a failover (make deps)
dashboards-check: build
	$(GO) run ./integration/cmd/dashboards-check -witnessd $(BIN)/witnessd

## simulate: SEEDS (10000) seeded fault schedules of the whole cluster on fake time (integration/sim), on every core, known defects included (SIM_FLAGS= leaves them out); ends with "N schedules, V violations" (V: schedules that broke an invariant)
simulate:
	@mkdir -p $(BIN)
	$(GO) test -c -o $(BIN)/sim.test ./integration/sim
	$(BIN)/sim.test -test.run '^TestSim$$' -test.timeout 0 -test.parallel $$(nproc) $(SIM_FLAGS) -seeds $(SEEDS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

dev: build
	$(BIN)/witnessd dev

## deps: Debian packages that the tests and the integration harness use
deps:
	bash .ci/install-deps

proto:
	bash proto/generate.sh

## compose-up: build the demo's images here (no registry needed) and start docker-compose.yml: three sites, BIND, PostgreSQL, Prometheus
compose-up:
	bash deploy/compose/up.sh

## compose-down: stop the compose demo and remove its containers, networks and volumes
compose-down:
	@command -v docker-compose >/dev/null || { echo "compose-down: docker-compose not found"; exit 1; }
	COMPOSE_PROJECT_NAME=witness-demo docker-compose down -v --remove-orphans

## compose-test: build and start the demo, lose east, check west takes over and east stays fenced, tear it all down
compose-test:
	bash deploy/compose/test.sh

clean:
	rm -rf $(BIN)

## bench-scale: N groups (N=100) on three witnessd and BIND on loopback: apply, stable, idle CPU and RSS, a site cut (make deps)
N ?= 100
bench-scale:
	$(GO) run ./integration/cmd/bench-scale -n $(N) $(BENCH_SCALE_FLAGS)
