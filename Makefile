# velo: the targets a developer and CI use. Everything needed is fetched by
# the go command from the module proxy; nothing is installed by hand.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s
# NESTED are the modules of their own inside this one, vetted and tested by
# make test and vetted by make lint; FUZZ=0 leaves the fuzz stage out of
# make test (the seed corpora still run with the tests). Both are for
# trying the Makefile on a small PKGS: make test PKGS=./internal/wire/
# NESTED= FUZZ=0.
NESTED   ?= discovery/etcd otelvelo bench
FUZZ     ?= 1

# The fuzz targets, as package:name.
FUZZ_TARGETS = \
	./internal/wire/:FuzzParseFrame \
	./internal/wire/:FuzzFrameReader \
	./events/:FuzzDeliver \
	.:FuzzHelloDecode \
	.:FuzzHandshake \
	.:FuzzSessionFrames \
	.:FuzzTypedPayload \
	.:FuzzStreamMessages \
	./internal/mpcheck/:FuzzCheck \
	./transport/ucx/:FuzzSplitBatch
TEST_FUZZ_INPUTS = 50000

# -tags ucx when libucx is installed: make bench then measures velo over
# UCX too (transport/ucx).
UCX_TAGS := $(shell pkg-config --exists ucx 2>/dev/null && echo -tags ucx)

# When make started, in seconds: make test's summary counts from it.
START := $(shell date +%s)

empty :=
space := $(empty) $(empty)
comma := ,
# The nested modules as a list for a sentence: "discovery/etcd, bench".
NESTED_LIST = $(subst $(space),$(comma) ,$(strip $(NESTED)))

ifeq ($(PKGS),./...)
SOAK_NOTE = , the 60 s soak smoke run among them
RACE_NOTE = $(SOAK_NOTE): the longest stage, minutes on 2 CPUs
endif
ifeq ($(FUZZ),0)
FUZZ_NOTE = fuzz stage left out (FUZZ=0)
else
FUZZ_NOTE = $(words $(FUZZ_TARGETS)) fuzz targets × $(TEST_FUZZ_INPUTS) inputs
endif

.PHONY: test bench lint fuzz proto

## test: vet, every test with the race detector (the fuzz seed corpora and
## the 60 s soak smoke run included) in the core module and the nested ones,
## then each fuzz target for 50 000 inputs (what CI runs); a line announces
## each stage, and the last one sums up what ran and how long it took
test:
	@echo "== vet of the core module ($(PKGS))"
	$(GO) vet $(PKGS)
	@echo "== race tests of the core module ($(PKGS))$(RACE_NOTE)"
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
ifeq ($(PKGS),./...)
	@if pkg-config --exists ucx 2>/dev/null; then \
		echo "== UCX: vet and race tests with -tags ucx (libucx $$(pkg-config --modversion ucx)): transport/ucx, the ping_pong example"; \
		$(GO) vet -tags ucx ./transport/ucx/ ./examples/ping_pong/ && \
		$(GO) test -race -tags ucx -count=1 -timeout 10m ./transport/ucx/ && \
		$(GO) test -race -tags ucx -count=1 -timeout 10m -run '^TestUCX$$' ./examples/ping_pong/ || exit 1; \
	else \
		echo "== UCX tests skipped: libucx is not installed (pkg-config ucx fails); apt-get install -y libucx-dev, as .ci/run does, to run them"; \
	fi
endif
	@for m in $(NESTED); do \
		echo "== vet and race tests of the nested module $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...) || exit 1; \
	done
ifneq ($(FUZZ),0)
	@echo "== $(FUZZ_NOTE) each"
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZ_INPUTS)x
endif
	@echo "== make test passed in $$(( $$(date +%s) - $(START) )) s: vet; race tests of $(words . $(NESTED)) $(if $(NESTED),modules,module) (core $(PKGS)$(SOAK_NOTE)$(if $(NESTED),; $(NESTED_LIST))); $(FUZZ_NOTE)"

## bench: the side-by-side suite (velo against its peers, servers in child
## processes; about 8 minutes on 2 CPUs, see docs/performance.md; flags in
## BENCHFLAGS, e.g. BENCHFLAGS=-quick; bench/ is a module of its own, run
## from its folder, so a relative -out is relative to bench/; with libucx
## installed it is built with -tags ucx and measures UCX too), the client
## heap per call with 100 000 calls in flight, 64 MiB unary echoes per
## transport, then the hot-path micro-benchmarks with allocations
bench:
	$(GO) run -C bench $(UCX_TAGS) . $(BENCHFLAGS)
	$(GO) run -C bench . -mode inflight
	$(GO) run -C bench $(UCX_TAGS) . -mode large
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
	@for m in $(NESTED); do (cd $$m && $(GO) vet ./...) || exit 1; done

## fuzz: each fuzz target for FUZZTIME (their seed corpora also run under
## make test); docs/reliability.md says what each one checks
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

## soak: the multi-process soak test (instances in child processes calling
## each other through fault proxies) for VELO_SOAK, 5 minutes unless set;
## make test runs a 60 s version of it
.PHONY: soak
soak:
	VELO_SOAK=$${VELO_SOAK:-5m} $(GO) test -race -count=1 -run '^TestSoak$$' -v -timeout 30m .
