package soak

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a run found: the load, the faults, and the children's
// findings. Problems says which of the soak's properties broke.
type Report struct {
	Duration time.Duration
	Children int
	Seed     uint64
	// Faults counts the faults injected, by kind.
	Faults map[string]int

	// Calls and OK count the calls made and those that succeeded; Failed
	// counts the others that ended with a *velo.Error, by its code.
	Calls, OK int
	Failed    map[string]int
	// Kinds counts calls and failures by call kind ("amsync", "unary"...).
	Kinds map[string]KindCount
	// Hung counts the calls that outlived their deadline by more than the
	// margin; MaxOverrun is the longest any call outlived its deadline.
	Hung       int
	MaxOverrun time.Duration
	// Bad counts the calls that ended with a wrong result, or with an
	// error that is not a *velo.Error.
	Bad int
	// Samples describe some of the hangs and bad results, by child.
	Samples []string
	// Notes counts the AMSends received.
	Notes int64

	// Acked counts the AMSyncs acknowledged (Send returned nil).
	Acked int
	// Lost lists the acknowledged AMSyncs that their target never
	// handled, Twice those handled more than once.
	Lost, Twice []Message

	// Base and After are each child's goroutines and heap before the load
	// and once it stopped.
	Base, After []Stats
}

// KindCount counts the calls of one kind and the failed ones.
type KindCount struct{ Calls, Failed int }

// Message is an AMSync of the load: its id, its sender and its target.
type Message struct {
	ID       uint64
	From, To int
}

// addLoad adds the children's accounts of their load.
func (r *Report) addLoad(stops []stopReply) {
	r.Failed = make(map[string]int)
	r.Kinds = make(map[string]KindCount)
	for i, s := range stops {
		r.Hung += s.Hung
		r.Bad += s.Bad
		r.Notes += s.Notes
		r.MaxOverrun = max(r.MaxOverrun, s.MaxOverrun)
		for _, sample := range s.Samples {
			r.Samples = append(r.Samples, fmt.Sprintf("child %d: %s", i, sample))
		}
		for name, k := range s.Kinds {
			r.Calls += k.Calls
			r.OK += k.OK
			kc := r.Kinds[name]
			kc.Calls += k.Calls
			for code, n := range k.Failed {
				r.Failed[code] += n
				kc.Failed += n
			}
			r.Kinds[name] = kc
		}
	}
}

// addIDs compares what the children acknowledged with what they handled.
func (r *Report) addIDs(ids []idReport) {
	handled := make([]map[uint64]bool, len(ids))
	for i, s := range ids {
		handled[i] = make(map[uint64]bool, len(s.Handled))
		for _, id := range s.Handled {
			handled[i][id] = true
		}
		for _, id := range s.Twice {
			from, _ := messageEnds(id)
			r.Twice = append(r.Twice, Message{ID: id, From: from, To: i})
		}
	}
	for i, s := range ids {
		for _, id := range s.Acked {
			r.Acked++
			from, to := messageEnds(id)
			if from != i || to >= len(ids) || !handled[to][id] {
				r.Lost = append(r.Lost, Message{ID: id, From: from, To: to})
			}
		}
	}
}

// farFromBase returns the children whose goroutines or heap are not near
// their baseline.
func (r *Report) farFromBase() []int {
	var far []int
	for i := range r.After {
		if r.After[i].Goroutines > r.Base[i].Goroutines+nearGoroutines(r.Children) ||
			r.After[i].HeapAlloc > r.Base[i].HeapAlloc+heapSlack {
			far = append(far, i)
		}
	}
	return far
}

// Problems returns one line per broken property of the soak, and per
// sample of a hang or a bad result; none when the run passed.
func (r *Report) Problems() []string {
	var ps []string
	ps = append(ps, r.Samples...)
	for _, m := range r.Twice {
		ps = append(ps, fmt.Sprintf("child %d handled message %#x more than once", m.To, m.ID))
	}
	for i, m := range r.Lost {
		if i == sampleMax {
			ps = append(ps, fmt.Sprintf("and %d more messages acknowledged but never handled", len(r.Lost)-i))
			break
		}
		ps = append(ps, fmt.Sprintf("message %#x from child %d to child %d was acknowledged but never handled", m.ID, m.From, m.To))
	}
	if r.Hung != 0 {
		ps = append(ps, fmt.Sprintf("%d calls outlived their deadline by more than %v", r.Hung, margin))
	}
	if r.Bad != 0 {
		ps = append(ps, fmt.Sprintf("%d calls ended with a wrong result or an error that is not a velo error", r.Bad))
	}
	if len(r.Lost) != 0 || len(r.Twice) != 0 {
		ps = append(ps, fmt.Sprintf("exactly once broken: %d acknowledged but not handled, %d handled twice", len(r.Lost), len(r.Twice)))
	}
	if r.Acked == 0 || r.OK < r.Calls/4 {
		ps = append(ps, fmt.Sprintf("too little load got through: %d of %d calls ok, %d AMSync acknowledged", r.OK, r.Calls, r.Acked))
	}
	if r.Duration >= ShortDuration {
		for _, f := range faults {
			if r.Faults[f.name] == 0 {
				ps = append(ps, fmt.Sprintf("no %s fault was injected", f.name))
			}
		}
	}
	for _, i := range r.farFromBase() {
		ps = append(ps, fmt.Sprintf("child %d did not return near its baseline within %v: goroutines %d→%d (allowed +%d), heap %s→%s (allowed +%s)",
			i, settle, r.Base[i].Goroutines, r.After[i].Goroutines, nearGoroutines(r.Children), mib(r.Base[i].HeapAlloc), mib(r.After[i].HeapAlloc), mib(heapSlack)))
	}
	return ps
}

// Summary is the run on one line.
func (r *Report) Summary() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "SOAK SUMMARY: %v, %d children, seed %d; faults injected: %s; calls: %d (%s), ok %d, failed %d by code: %s; calls lost (hung past deadline+%v): %d, longest overrun %v; bad results: %d; acknowledged AMSync %d, acknowledged but not handled %d, handled twice %d; AMSend notes received %d;",
		r.Duration, r.Children, r.Seed, counts(r.Faults), r.Calls, kindsLine(r.Kinds), r.OK, r.Calls-r.OK-r.Bad, counts(r.Failed),
		margin, r.Hung, r.MaxOverrun.Round(time.Millisecond), r.Bad, r.Acked, len(r.Lost), len(r.Twice), r.Notes)
	for i := range r.After {
		fmt.Fprintf(&sb, " child %d heap %s→%s goroutines %d→%d;", i, mib(r.Base[i].HeapAlloc), mib(r.After[i].HeapAlloc), r.Base[i].Goroutines, r.After[i].Goroutines)
	}
	return sb.String()
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func kindsLine(m map[string]KindCount) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d/%d failed", k, m[k].Failed, m[k].Calls))
	}
	return strings.Join(parts, ", ")
}

func mib(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
