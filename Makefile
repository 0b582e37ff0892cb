# velo: the targets a developer and CI use. Everything needed is fetched by
# the go command from the module proxy; nothing is installed by hand.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s

.PHONY: test bench lint fuzz

## test: vet, then every test with the race detector (what CI runs)
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	cd discovery/etcd && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...

## bench: the side-by-side suite (velo against its peers, servers in child
## processes), then the hot-path micro-benchmarks with allocations
bench:
	$(GO) run ./bench
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./bench/ ./internal/wire/ ./mailbox/ ./actor/

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd discovery/etcd && $(GO) vet ./...

## fuzz: each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseFrame$$' -fuzztime $(FUZZTIME) ./internal/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME) ./internal/wire/
