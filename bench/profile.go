package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
)

// profileEnv carries -cpuprofile to the server processes.
const profileEnv = "VELO_BENCH_CPUPROFILE"

// startProfile writes a CPU profile of this process to dir/name.pprof
// until the returned function is called.
func startProfile(dir, name string) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name = strings.NewReplacer("/", "-", string(filepath.Separator), "-").Replace(name)
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
