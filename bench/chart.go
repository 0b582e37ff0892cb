package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartFile is the chart's name in the -out folder.
const chartFile = "bench.png"

// drawChart draws two panels side by side, for the smallest payload
// measured: the p50 latency of each velo family over each transport as
// bars, the floor and the peers as horizontal lines; and the calls/s of
// velo's unary calls (per transport), the floor and the peers against the
// number of calls in flight. It returns the file written, or "" when the
// run measured neither.
func drawChart(dir string, res results) (string, error) {
	var plots []*plot.Plot
	if p, err := latencyPlot(res); err != nil {
		return "", err
	} else if p != nil {
		plots = append(plots, p)
	}
	if p, err := throughputPlot(res); err != nil {
		return "", err
	} else if p != nil {
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return "", nil
	}
	const panelW, h = 6.5 * vg.Inch, 4.2 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(panelW*vg.Length(len(plots)), h), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, chartFile)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// peerStyle gives the floor and each peer a line style of its own.
func peerStyle(i int) draw.LineStyle {
	return draw.LineStyle{Color: peerColors[i%len(peerColors)], Width: vg.Points(1.5), Dashes: plotutil.Dashes(1 + i%4)}
}

var peerColors = []color.Color{
	color.Gray{Y: 0x20},
	color.RGBA{R: 0xc0, G: 0x30, B: 0x30, A: 0xff},
	color.RGBA{R: 0x30, G: 0x80, B: 0x30, A: 0xff},
	color.RGBA{R: 0x90, G: 0x50, B: 0xb0, A: 0xff},
	color.RGBA{R: 0xa0, G: 0x70, B: 0x20, A: 0xff},
}

func latencyPlot(res results) (*plot.Plot, error) {
	payloads := res.distinct(modeLatency, func(c cell) int { return c.payload })
	if len(payloads) == 0 {
		return nil, nil
	}
	ce := cell{mode: modeLatency, inFlight: 1, payload: slices.Min(payloads)}
	rows := res.in(ce)
	var transports, families []string
	for _, r := range rows {
		if r.sys.isVelo() {
			if !slices.Contains(transports, r.sys.Transport) {
				transports = append(transports, r.sys.Transport)
			}
			if !slices.Contains(families, r.sys.Family) {
				families = append(families, r.sys.Family)
			}
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("p50 latency, one call at a time, %s payload", sizeString(ce.payload))
	p.Y.Label.Text = "µs (lower is better)"
	p.Y.Min = 0
	top := 0.0
	barW := vg.Points(9)
	for i, fam := range families {
		vals := make(plotter.Values, len(transports))
		for j, t := range transports {
			if r, ok := res.find(ce, fam+"/"+t); ok {
				vals[j] = micros(r.sum.p50)
				top = math.Max(top, vals[j])
			}
		}
		bars, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return nil, err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = barW * (vg.Length(i) - vg.Length(len(families)-1)/2)
		p.Add(bars)
		p.Legend.Add(fam, bars)
	}
	if len(transports) > 0 {
		p.NominalX(transports...)
	}
	lo, hi := -0.5, math.Max(float64(len(transports))-0.5, 0.5)
	k := 0
	for _, r := range rows {
		if r.sys.isVelo() {
			continue
		}
		v := micros(r.sum.p50)
		top = math.Max(top, v)
		l, err := plotter.NewLine(plotter.XYs{{X: lo, Y: v}, {X: hi, Y: v}})
		if err != nil {
			return nil, err
		}
		l.LineStyle = peerStyle(k)
		k++
		p.Add(l)
		p.Legend.Add(r.sys.Name, l)
	}
	p.Y.Max = top * 1.45 // room for the legend above the bars
	p.Y.Tick.Marker = niceTicks{format: func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p, nil
}

func throughputPlot(res results) (*plot.Plot, error) {
	payloads := res.distinct(modeConcurrent, func(c cell) int { return c.payload })
	levels := res.distinct(modeConcurrent, func(c cell) int { return c.inFlight })
	if len(payloads) == 0 || len(levels) == 0 {
		return nil, nil
	}
	payload := slices.Min(payloads)
	slices.Sort(levels)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("throughput by calls in flight, %s payload", sizeString(payload))
	p.X.Label.Text = "calls in flight"
	p.Y.Label.Text = "calls/s (higher is better)"
	p.Y.Min = 0
	if len(levels) > 1 {
		p.X.Scale = plot.LogScale{}
	}
	var ticks []plot.Tick
	for _, n := range levels {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: fmt.Sprint(n)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	top := 0.0
	k, v := 0, 0
	for _, sys := range res.systemsOf(modeConcurrent) {
		// velo's unary calls per transport, and everything that is not velo.
		if sys.isVelo() && sys.Family != "velo-unary" {
			continue
		}
		var xys plotter.XYs
		for _, n := range levels {
			if r, ok := res.find(cell{mode: modeConcurrent, inFlight: n, payload: payload}, sys.Name); ok {
				xys = append(xys, plotter.XY{X: float64(n), Y: r.sum.rate})
				top = math.Max(top, r.sum.rate)
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		if sys.isVelo() {
			l.LineStyle = draw.LineStyle{Color: plotutil.Color(v), Width: vg.Points(2)}
			pts.Shape = plotutil.Shape(v)
			pts.Color = plotutil.Color(v)
			v++
		} else {
			l.LineStyle = peerStyle(k)
			pts.Shape = draw.CircleGlyph{}
			pts.Color = l.LineStyle.Color
			k++
		}
		p.Add(l, pts)
		p.Legend.Add(sys.Name, l, pts)
	}
	p.Y.Max = top * 1.5
	p.Y.Tick.Marker = niceTicks{format: func(v float64) string {
		if v == 0 {
			return "0"
		}
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p, nil
}

// niceTicks labels about five round values (1, 2 or 5 times a power of
// ten apart) between the axis' ends.
type niceTicks struct{ format func(float64) string }

func (t niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if hi <= lo {
		return nil
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e6; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: t.format(v)})
		if minor := v + step/2; minor < hi {
			ts = append(ts, plot.Tick{Value: minor})
		}
	}
	return ts
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
