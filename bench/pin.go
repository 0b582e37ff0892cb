package main

import (
	"fmt"
	"runtime"
	"strings"
)

// Where the processes run. On a small virtual machine this decides the
// result more than anything measured: a round trip between two processes
// on different CPUs pays two cross-CPU wake-ups, each costing tens of µs
// when the other CPU is idle, while two processes on one CPU hand over in a
// context switch. Left to the scheduler, a run may flip between the two
// from one repetition to the next. -pin fixes the placement; by default
// (where pinning is supported) everything runs on one CPU, the only
// placement that gives repeatable numbers on a 2-CPU virtual machine. Note
// that it also runs every process with GOMAXPROCS 1, which hides the cost
// of waking a second thread (see the -pin none and -pin split runs).
const (
	pinNone  = "none"  // leave placement to the scheduler
	pinSame  = "same"  // servers and client on one CPU: the CPU cost of each side adds up
	pinSplit = "split" // servers on one CPU, client on another: the wake-up cost of a real network hop
	// pinProcess runs every server in the bench's own process, beside the
	// client, unpinned, with GOMAXPROCS as the runtime chose: what a user
	// of `go test -bench` measures.
	pinProcess = "process"
)

// placement says on which CPUs the server processes and the client run;
// nil means wherever the scheduler likes.
type placement struct {
	mode            string
	servers, client []int
}

func planPlacement(mode string) (placement, error) {
	p := placement{mode: mode}
	if mode == pinNone || mode == pinProcess {
		return p, nil
	}
	if mode != pinSame && mode != pinSplit {
		return p, fmt.Errorf("-pin %q, want %s, %s, %s or %s", mode, pinNone, pinSame, pinSplit, pinProcess)
	}
	cpus, err := allowedCPUs()
	if err != nil {
		return p, err
	}
	switch {
	case len(cpus) == 0:
		return p, fmt.Errorf("-pin %s: no CPU allowed", mode)
	case mode == pinSame:
		p.servers, p.client = cpus[:1], cpus[:1]
	case len(cpus) < 2:
		return p, fmt.Errorf("-pin %s needs 2 CPUs, this process may use %v", mode, cpus)
	default:
		p.servers, p.client = cpus[1:2], cpus[:1]
	}
	return p, nil
}

// beforeServers pins this process where the server processes must run:
// they inherit its placement when they start.
func (p placement) beforeServers() error {
	if p.servers == nil {
		return nil
	}
	return pinTo(p.servers)
}

// afterServers pins this process where the client runs.
func (p placement) afterServers() error {
	if p.client == nil {
		return nil
	}
	return pinTo(p.client)
}

func (p placement) String() string {
	switch p.mode {
	case pinNone:
		return "servers in child processes; placement left to the scheduler"
	case pinProcess:
		return fmt.Sprintf("servers and client in one process, GOMAXPROCS %d, placement left to the scheduler", runtime.GOMAXPROCS(0))
	}
	cpuList := func(cpus []int) string {
		s := make([]string, len(cpus))
		for i, c := range cpus {
			s[i] = fmt.Sprint(c)
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprintf("servers in child processes; servers pinned to CPU %s, client to CPU %s", cpuList(p.servers), cpuList(p.client))
}
