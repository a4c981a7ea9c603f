# Smart Maintenance — build, test and run.
#   make demo    run the whole system on its embedded defaults
#   make test    unit + integration tests against real PostgreSQL, Mosquitto and S3
# Other targets: build cross lint fuzz bench bench-quick e2e services clean help

SHELL      := /usr/bin/env bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
VPKG       := github.com/smartmaint/smartmaint/shared/version
LDFLAGS    := -s -w -X $(VPKG).version=$(VERSION) -X $(VPKG).commit=$(COMMIT)
BIN        := bin

# Test services (deploy/dev/services.sh starts whatever is missing).
export SM_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export SM_TEST_MQTT     ?= tcp://127.0.0.1:1883
export SM_S3_PORT       ?= 7070
export SM_S3_ACCESS     ?= smartmaint
export SM_S3_SECRET     ?= smartmaint-dev-secret
export SM_TEST_S3       ?= http://127.0.0.1:$(SM_S3_PORT)

TEST_TIMEOUT ?= 20m
FUZZTIME     ?= 10s

.PHONY: all build cross test unit lint fuzz bench bench-quick e2e demo services clean help

all: build

help:
	@sed -n '1,4p' Makefile

## build: bin/sm-edge (static, stripped) and bin/sm-collector
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sm-edge ./edge/cmd/sm-edge
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sm-collector ./collector/cmd/sm-collector

## cross: sm-edge for linux/amd64, linux/arm64, linux/arm (v7)
cross:
	@for t in amd64: arm64: arm:7; do \
		arch=$${t%%:*}; arm=$${t##*:}; out=$(BIN)/sm-edge-linux-$$arch$${arm:+v$$arm}; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./edge/cmd/sm-edge || exit 1; \
	done

services:
	@deploy/dev/services.sh

## test: everything, against the real services (started when missing)
test: services
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## unit: only tests that need no service (fast inner loop)
unit:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: every fuzz target for FUZZTIME each
fuzz: services
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## bench: micro and system benchmarks in one table (deploy/bench; ~6 min,
## BENCH_QUICK=1 for a ~1.5 min smoke run); the table also goes to bin/bench.md
bench: services build
	BENCH_OUT=$${BENCH_OUT:-$(CURDIR)/$(BIN)/bench.md} $(GO) test -count=1 -v -tags bench -run '^TestBench$$' -timeout 40m ./deploy/bench

## bench-quick: the same with small volumes
bench-quick:
	BENCH_QUICK=1 $(MAKE) bench

## e2e: end-to-end scenarios with the real binaries
e2e: services build
	$(GO) test -count=1 -v -tags e2e -timeout 40m ./deploy/e2e/...

## demo: the whole system on embedded defaults
demo: build
	@deploy/dev/demo.sh

clean:
	rm -rf $(BIN)
