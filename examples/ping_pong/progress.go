package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// progressBar draws "[#####     ]  50% 2500/5000" on stderr, redrawn in
// place with '\r'. It draws only when stderr is a terminal, so that
// redirected output and logs stay clean, and only when the percentage
// changes, so that drawing costs the measured loop next to nothing.
type progressBar struct {
	w     io.Writer // nil: draw nothing
	total int
	shown int // the percentage drawn last
}

const barWidth = 40

func newProgressBar(total int) *progressBar {
	b := &progressBar{total: total, shown: -1}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		b.w = os.Stderr
	}
	return b
}

// set records that done of total steps are complete.
func (b *progressBar) set(done int) {
	pct := done * 100 / b.total
	if b.w == nil || pct == b.shown {
		return
	}
	b.shown = pct
	filled := barWidth * done / b.total
	fmt.Fprintf(b.w, "\r[%s%s] %3d%% %d/%d",
		strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled), pct, done, b.total)
}

// finish ends the bar's line, so that what follows starts on a new one.
func (b *progressBar) finish() {
	if b.w != nil && b.shown >= 0 {
		fmt.Fprintln(b.w)
	}
}
