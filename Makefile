# fleetd — build, test and demo. Every target works on a fresh machine with Go
# and git: whatever a target needs is built here, cached by version.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10s
# Fuzz targets run briefly by `make test`: package:target.
FUZZ_TARGETS ?= ./schema:FuzzLoad ./schema:FuzzFastParse ./reconcile:FuzzObservedFromStatus \
	./internal/server:FuzzGitLabPush ./internal/server:FuzzGitHubPush ./internal/server:FuzzGitHubPing \
	./internal/server:FuzzGitHubWebhook
GOLANGCI_LINT_VERSION ?= v2.15.0
# A release build: no file-system paths, no symbol table or DWARF (34 MB
# instead of 48 MB); `go build ./cmd/fleetd` still gives a debuggable one.
LDFLAGS   := -s -w -X main.version=$(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# Ajv (JSON Schema draft 2020-12) and js-yaml on Node: the independent
# validator of the differential test and the peer of `make bench`. Installed
# from the npm registry, pinned by hack/ajv/package-lock.json, into a cache
# directory named after the lock file's hash (never committed).
AJV_HASH  := $(shell sha256sum hack/ajv/package-lock.json 2>/dev/null | cut -c1-12)
AJV_DIR   ?= $(HOME)/.cache/fleetd/ajv-$(AJV_HASH)
BENCH_CLUSTERS ?= 10000

.PHONY: all build test vet unit fuzz bench bench-validate bench-webhooks ajv lint demo verify clean kube-tools chaos

all: build

build:
	@echo "build: compiling bin/fleetd (a cold first build downloads and compiles the dependencies: a few minutes)"
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/fleetd ./cmd/fleetd

test: vet kube-tools unit fuzz

# kube-tools builds the test kube-apiserver and etcd from their Go modules
# (hack/kube-tools, outside fleetd's go.mod) into a cache keyed by version:
# 9 to 15 minutes the first time on 2 cores, instant afterwards.
kube-tools:
	@hack/kube-tools/build.sh >/dev/null

vet:
	$(GO) vet $(PKGS)

# unit runs every test. The Kubernetes and Rancher tests get the apiserver
# binaries through FLEETD_KUBE_ASSETS and, with FLEETD_KUBE_REQUIRE=1, fail
# rather than skip when they cannot start them; the differential schema test
# gets Ajv through FLEETD_AJV_DIR, likewise required.
unit: kube-tools ajv
	FLEETD_KUBE_ASSETS="$$(hack/kube-tools/build.sh 2>/dev/null)" FLEETD_KUBE_REQUIRE=1 \
	FLEETD_AJV_DIR=$(AJV_DIR) FLEETD_REQUIRE_AJV=1 \
		$(GO) test -race -count=1 $(PKGS)

ajv: $(AJV_DIR)/.installed

$(AJV_DIR)/.installed: hack/ajv/package.json hack/ajv/package-lock.json
	@echo "ajv: installing Ajv and js-yaml (pinned by hack/ajv/package-lock.json) into $(AJV_DIR)"
	@mkdir -p $(AJV_DIR)
	cp hack/ajv/package.json hack/ajv/package-lock.json $(AJV_DIR)/
	cd $(AJV_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s $$pkg; \
	done

# bench runs every benchmark; BenchmarkDaemonWebhook (cmd/fleetd-demo) takes
# about 12 minutes on 2 cores, FLEETD_BENCH_CLUSTERS=1000 skips its 10,000
# clusters run.
bench: bench-validate
	$(GO) test -run='^$$' -bench=. -benchmem -timeout 60m $(PKGS)

# bench-webhooks starts `fleetd run` as a child process and floods it for 20s
# with 1,000 senders of slow bad-signature GitHub webhooks, printing the
# daemon's RSS idle, at its peak and after (target: peak within 64 MiB of
# idle). FLEETD_BENCH_BINARY=path measures another build of fleetd instead.
bench-webhooks:
	$(GO) test -run='^$$' -bench='^BenchmarkRunWebhookFlood$$' -benchtime=1x ./cmd/fleetd

# bench-validate times `fleetd validate` and Ajv+js-yaml on Node on the same
# generated fleet of $(BENCH_CLUSTERS) clusters, side by side, and prints the ratio.
bench-validate: build ajv
	AJV_DIR=$(AJV_DIR) hack/bench-validate.sh $(BENCH_CLUSTERS)

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run $(PKGS)

# demo validates the example fleet, prints its pools, then runs `fleetd run`,
# the daemon, against simulators on 127.0.0.1 (cmd/fleetd-demo): the vCenter
# simulator, the EC2 protocol server, a git repository, and Rancher played by
# a stand-in on the test kube-apiserver (built on the first run, then cached).
demo: build kube-tools
	@echo "demo: validating and showing the example fleet, then running the daemon against simulators"
	bin/fleetd validate examples/fleet-repo
	bin/fleetd show --all examples/fleet-repo
	FLEETD_KUBE_ASSETS="$$(hack/kube-tools/build.sh 2>/dev/null)" $(GO) run ./cmd/fleetd-demo --fleetd bin/fleetd examples/fleet-repo

# chaos kills `fleetd run` with SIGKILL at random moments during a converge on
# the simulators, 200 times (make test runs 20 of these trials).
chaos:
	FLEETD_CHAOS_TRIALS=200 $(GO) test -count=1 -timeout 60m -run '^TestDaemonCrashTrials$$' -v ./cmd/fleetd-demo

verify:
	$(GO) mod tidy
	gofmt -l . | (! grep .)
	git diff --exit-code -- go.mod go.sum

clean:
	rm -rf bin
