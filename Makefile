# velo: the targets a developer and CI use. Everything needed is fetched by
# the go command from the module proxy; nothing is installed by hand.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s

.PHONY: test bench lint fuzz proto

## test: vet, every test with the race detector (the fuzz seed corpora and
## the 60 s soak smoke run included), then each fuzz target for 50 000 inputs
## (what CI runs)
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	cd discovery/etcd && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...
	cd bench && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=50000x

## bench: the side-by-side suite (velo against its peers, servers in child
## processes; about 8 minutes on 2 CPUs, see docs/performance.md; flags in
## BENCHFLAGS, e.g. BENCHFLAGS=-quick; bench/ is a module of its own, run
## from its folder, so a relative -out is relative to bench/), the client
## heap per call with 100 000 calls in flight, then the hot-path
## micro-benchmarks with allocations
bench:
	$(GO) run -C bench . $(BENCHFLAGS)
	$(GO) run -C bench . -mode inflight
	$(GO) test -C bench -run '^$$' -bench . -benchmem -count 3 .
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./internal/wire/ ./mailbox/ ./actor/

## proto: regenerate transport/grpc/internal/velopb from velo.proto (needs protoc: apt-get install -y protobuf-compiler)
proto:
	GOBIN=$(CURDIR)/.bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(CURDIR)/.bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$(CURDIR)/.bin:$$PATH" protoc -I . --go_out=. --go_opt=module=github.com/velo-messenger/velo --go-grpc_out=. --go-grpc_opt=module=github.com/velo-messenger/velo transport/grpc/velo.proto

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd discovery/etcd && $(GO) vet ./...
	cd bench && $(GO) vet ./...

## fuzz: each fuzz target for FUZZTIME (their seed corpora also run under
## make test); docs/reliability.md says what each one checks
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseFrame$$' -fuzztime $(FUZZTIME) ./internal/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME) ./internal/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzDeliver$$' -fuzztime $(FUZZTIME) ./events/
	$(GO) test -run '^$$' -fuzz '^FuzzHelloDecode$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzHandshake$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzSessionFrames$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzTypedPayload$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/mpcheck/

## soak: the multi-process soak test (instances in child processes calling
## each other through fault proxies) for VELO_SOAK, 5 minutes unless set;
## make test runs a 60 s version of it
.PHONY: soak
soak:
	VELO_SOAK=$${VELO_SOAK:-5m} $(GO) test -race -count=1 -run '^TestSoak$$' -v -timeout 30m .
