# fleetd — build, test and demo. Every target works on a fresh machine with Go
# and git: whatever a target needs is built here, cached by version.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10s
# Fuzz targets run briefly by `make test`: package:target.
FUZZ_TARGETS ?= ./schema:FuzzLoad ./reconcile:FuzzObservedFromStatus
GOLANGCI_LINT_VERSION ?= v2.15.0
LDFLAGS   := -X main.version=$(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: all build test vet unit fuzz bench lint demo verify clean kube-tools

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/fleetd ./cmd/fleetd

test: vet kube-tools unit fuzz

# kube-tools builds the test kube-apiserver and etcd from their Go modules
# (hack/kube-tools, outside fleetd's go.mod) into a cache keyed by version:
# 9 to 15 minutes the first time on 2 cores, instant afterwards.
kube-tools:
	@hack/kube-tools/build.sh >/dev/null

vet:
	$(GO) vet $(PKGS)

# unit runs every test; the Kubernetes and Rancher tests get the apiserver
# binaries through FLEETD_KUBE_ASSETS and, with FLEETD_KUBE_REQUIRE=1, fail
# rather than skip when they cannot start them.
unit: kube-tools
	FLEETD_KUBE_ASSETS="$$(hack/kube-tools/build.sh 2>/dev/null)" FLEETD_KUBE_REQUIRE=1 \
		$(GO) test -race -count=1 $(PKGS)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s $$pkg; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run $(PKGS)

# demo validates the example fleet, prints its pools, then runs the sync loop
# on it against the vCenter simulator, the EC2 protocol server and a simulated
# Rancher, all on 127.0.0.1 (cmd/fleetd-demo).
demo: build
	bin/fleetd validate examples/fleet-repo
	bin/fleetd show --all examples/fleet-repo
	$(GO) run ./cmd/fleetd-demo examples/fleet-repo

verify:
	$(GO) mod tidy
	gofmt -l . | (! grep .)
	git diff --exit-code -- go.mod go.sum

clean:
	rm -rf bin
