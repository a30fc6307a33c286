# berth: `make demo` sets up and shows berth; `make test` runs every test.
# Both install what they need first (Debian packages, pinned Go tools).

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.cache/tools
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-engine/berth/internal/version.Version=$(VERSION) \
           -X github.com/berth-engine/berth/internal/version.Revision=$(REVISION)

# Debian packages the demo and the tests use: busybox for test images, skopeo and
# umoci as independent peers, docker-registry as a local registry, runc as the runtime.
DEB_PACKAGES := busybox-static skopeo umoci docker-registry runc tmux iproute2 nftables

# Pinned Go tools, installed into .cache/tools.
STATICCHECK_VERSION := v0.8.2
GRPCURL_VERSION := v1.9.4
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOC_GEN_GO_TTRPC_VERSION := v1.2.10

COMMANDS := berthd berth-snapshotter berth-shim berth mkimage bench
DEMO_ROOT ?= /var/lib/berth
DEMO_STATE ?= /run/berth

.PHONY: all deps deb-deps tools build proto lint unit integration test bench demo demo-stop clean

all: build

deps: deb-deps tools

deb-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run 'make deps' as root)"; exit 1; fi; \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

tools: $(TOOLS)/staticcheck $(TOOLS)/grpcurl

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS)/grpcurl:
	GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(TOOLS)/protoc-gen-go-ttrpc:
	GOBIN=$(TOOLS) $(GO) install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$(PROTOC_GEN_GO_TTRPC_VERSION)

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berthd ./services/cmd/berthd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berth-snapshotter ./snapshotter/cmd/berth-snapshotter
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berth-shim ./shim/cmd/berth-shim
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./cli/cmd/berth
	$(GO) build -o $(BIN)/mkimage ./tools/mkimage
	$(GO) build -o $(BIN)/bench ./tools/bench

# Regenerates the Go code beside the .proto files; the result is committed.
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/protoc-gen-go-ttrpc
	PATH=$(TOOLS):$$PATH buf lint
	PATH=$(TOOLS):$$PATH buf generate

lint: $(TOOLS)/staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "not gofmt-ed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

unit:
	$(GO) test -count=1 ./...

# Integration tests start real daemons; they need root and the built binaries.
integration: build tools
	BERTH_BIN=$(BIN) GRPCURL=$(TOOLS)/grpcurl $(GO) test -count=1 -timeout 30m -v ./integration/...

test: deps lint unit integration

bench: deps build
	$(BIN)/bench

# The demo runs berthd on the default root and state and leaves it running;
# `make demo-stop` stops it.
demo: deps build
	@mkdir -p $(CURDIR)/.cache
	@if ! $(BIN)/berth --address $(DEMO_STATE)/berthd.sock version >/dev/null 2>&1; then \
		echo "starting berthd (log: $(CURDIR)/.cache/berthd-demo.log)"; \
		setsid $(BIN)/berthd --root $(DEMO_ROOT) --state $(DEMO_STATE) >$(CURDIR)/.cache/berthd-demo.log 2>&1 & \
		echo $$! > $(CURDIR)/.cache/berthd-demo.pid; \
		for i in $$(seq 50); do $(BIN)/berth --address $(DEMO_STATE)/berthd.sock version >/dev/null 2>&1 && break; sleep 0.1; done; \
	fi
	$(BIN)/mkimage busybox -format docker -name busybox:latest -o $(CURDIR)/.cache/busybox.tar
	$(BIN)/berth --address $(DEMO_STATE)/berthd.sock load -i $(CURDIR)/.cache/busybox.tar
	$(BIN)/berth --address $(DEMO_STATE)/berthd.sock images
	@echo; echo "berthd is running; try: $(BIN)/berth images, $(BIN)/berth run -d busybox sleep 60, $(BIN)/berth ps. Stop it with 'make demo-stop'."
	$(BIN)/berth --address $(DEMO_STATE)/berthd.sock run --rm busybox echo hello from berth

demo-stop:
	@if [ -f $(CURDIR)/.cache/berthd-demo.pid ]; then kill $$(cat $(CURDIR)/.cache/berthd-demo.pid) 2>/dev/null; rm -f $(CURDIR)/.cache/berthd-demo.pid; fi

clean:
	rm -rf $(BIN) $(CURDIR)/.cache
