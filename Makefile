# Streamgate. `make run` starts a dev node on :8080 with an embedded Redis; `make test` is what CI runs.
GO       ?= go
BIN      := bin
PKGS     := ./...
# What `api version` says: the nearest tag, commits since and the commit (v1.2.0-3-gabc1234).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# The Helm chart's test is a module of its own (Helm and the Kubernetes libraries stay out of
# go.mod): ./... above does not reach it.
CHARTCHECK := deploy/helm/chartcheck

.PHONY: run test test-js test-helm bench soak xload lint vuln build clean docker fuzz

run:
	$(GO) run ./cmd/api

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) --no-print-directory test-helm
	@if command -v node >/dev/null 2>&1; then $(MAKE) --no-print-directory test-js; \
	else echo "test-js skipped: node is not on PATH (the JavaScript client needs Node 18 or later)"; fi

# The JavaScript client (clients/js) against a real api built here; node's own test runner.
test-js:
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(GO) build -o "$$dir/api" ./cmd/api && \
	cd clients/js && STREAMGATE_API_BIN="$$dir/api" node --test test/

# The Helm chart (deploy/helm/streamgate) rendered with Helm's own Go packages and checked as
# Kubernetes objects; no helm binary, no cluster. The first build compiles Helm and the
# Kubernetes client libraries: a few minutes on two cores.
test-helm:
	cd $(CHARTCHECK) && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

# A short run of every fuzzer (their seed corpora also run in `make test`). FUZZTIME=1m for longer;
# CI gives a count (FUZZTIME=20000x), which does not depend on how busy the machine is.
# The targets are found in the code: every `func FuzzX(f *testing.F)` in a _test.go file. Go's
# fuzzing engine sometimes reports "context deadline exceeded" when -fuzztime ends mid-run,
# with no failing input: such a run is tried once more; a real failure fails at once.
FUZZTIME ?= 5s

fuzz:
	@git grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' -- '*_test.go' | while read -r file; do \
		dir=./$$(dirname "$$file"); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing.F).*/\1/p' "$$file"); do \
			echo "fuzz $$name ($$dir, $(FUZZTIME))"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir" 2>&1); rc=$$?; echo "$$out"; \
			if [ $$rc -ne 0 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input'; then \
				echo "fuzz $$name: the engine timed out at its deadline without a failing input; once more"; \
				$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir" || exit 1; \
			elif [ $$rc -ne 0 ]; then exit 1; fi; \
		done; \
	done

bench:
	GO="$(GO)" ./scripts/bench.sh

# A churning load for SOAK_DURATION (10m): what grows is a leak. Not part of test or CI.
soak:
	GO="$(GO)" ./scripts/soak.sh

# Scenarios A, B' and C of bench measured by a second client written apart from sgbench, in
# Node.js (scripts/xload): XLOAD_SCENARIOS="A C" picks some. Not part of test or CI.
xload:
	GO="$(GO)" ./scripts/xload/run.sh

# gofmt, go vet, staticcheck and deadcode, pinned by the tool directive in go.mod. deadcode
# reports every package but the test-support ones (internal/redistest, internal/sseclient).
# gofmt covers every tracked Go file; the chart's test module is vetted too.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	cd $(CHARTCHECK) && $(GO) vet ./...
	$(GO) tool staticcheck $(PKGS)
	@filter="^($$($(GO) list $(PKGS) | grep -v -e /internal/redistest -e /internal/sseclient | paste -sd'|'))\$$"; \
	out=$$($(GO) tool deadcode -test=false -filter "$$filter" ./cmd/...); \
	if [ -n "$$out" ]; then echo "unreachable code:"; echo "$$out"; exit 1; fi

# Known vulnerabilities in the code's call graph, offline: the database is built once from the
# golang.org/x/vulndb module (fetched from the Go module proxy) into $(VULNDB).
VULNDB     ?= $(HOME)/.cache/streamgate/vulndb
VULNDB_REV := v0.0.0-20261105234957-e22db6528018

vuln: $(VULNDB)/index/db.json
	$(GO) tool govulncheck -db file://$(abspath $(VULNDB)) $(PKGS)

$(VULNDB)/index/db.json:
	@mkdir -p $(VULNDB)
	$(GO) mod download golang.org/x/vulndb@$(VULNDB_REV)
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_REV) \
		-vulns $$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_REV) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/data/osv \
		-out $(VULNDB)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

clean:
	rm -rf $(BIN)

docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t streamgate:latest .
