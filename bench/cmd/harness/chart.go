package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart draws the median throughput of each streaming workload for both
// systems, and the consume-only ceilings for scale, to throughput.png.
func (r *report) chart() error {
	var names []string
	var ed, ks plotter.Values
	for _, wl := range throughputWorkloads {
		e, k := r.median(wl, sysEddy, fRate), r.median(wl, sysKS, fRate)
		if e == 0 && k == 0 {
			continue
		}
		names = append(names, wl)
		ed = append(ed, e/1000)
		ks = append(ks, k/1000)
	}
	if len(names) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("records/s on one core, median of %d runs (Kafka 4.1.2, %d-core %s)", r.cfg.reps, r.machine.NProc, r.machine.CPUModel)
	p.Y.Label.Text = "thousand records/s"
	w := vg.Points(18)
	be, err := plotter.NewBarChart(ed, w)
	if err != nil {
		return err
	}
	be.Color = plotutil.Color(0)
	be.Offset = -w / 2
	bk, err := plotter.NewBarChart(ks, w)
	if err != nil {
		return err
	}
	bk.Color = plotutil.Color(1)
	bk.Offset = w / 2
	p.Add(be, bk)
	p.Legend.Add("eddy", be)
	p.Legend.Add("Kafka Streams", bk)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(r.cfg.out, "throughput.png"))
}
