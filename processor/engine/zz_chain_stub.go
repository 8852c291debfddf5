package engine

// Temporary: replaced by the chained-rollup engine work (chain.go).

func (p *Pipeline) Chained() bool { return p.spec.From != "" }

func (t *Task) ClosedThrough() int64 { return t.streamTime - t.p.spec.Window.Grace.Milliseconds() }

func (t *Task) Follow(rs []Result, through int64, fx *Effects) error {
	fx.reset()
	return nil
}
