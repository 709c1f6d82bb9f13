# Streamgate. `make run` starts a dev node on :8080 with an embedded Redis; `make test` is what CI runs.
GO       ?= go
BIN      := bin
PKGS     := ./...

.PHONY: run test bench lint build clean docker fuzz

run:
	$(GO) run ./cmd/api

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# A short run of every fuzzer (their seed corpora also run in `make test`). FUZZTIME=1m for longer.
FUZZTIME ?= 5s
FUZZERS  := .:FuzzMatchPattern .:FuzzValidChannel ./internal/tenant:FuzzVerifyToken ./internal/stream:FuzzParseCursor

fuzz:
	@for f in $(FUZZERS); do \
		pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

bench:
	GO="$(GO)" ./scripts/bench.sh

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

clean:
	rm -rf $(BIN)

docker:
	docker build -t streamgate:latest .
