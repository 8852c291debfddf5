// Package generator makes realistic HTTP request events for the demo and
// for tests: a few services and endpoints with their own latency profiles
// and error rates, user agents, regions, and a configurable share of
// out-of-order and late events. It is deterministic for a given seed and
// sequence of times.
package generator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Event is one HTTP request, as services would log it to Kafka.
type Event struct {
	TS        int64   `json:"ts"` // event time, Unix milliseconds
	Service   string  `json:"service"`
	Endpoint  string  `json:"endpoint"`
	Method    string  `json:"method"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	UserAgent string  `json:"user_agent"`
	Region    string  `json:"region"`
	RequestID string  `json:"request_id"`
}

type route struct {
	service, endpoint, method string
	medianMS, sigma           float64 // lognormal latency
	errRate                   float64
	weight                    int
}

var routes = []route{
	{"checkout", "/api/cart", "GET", 18, 0.5, 0.005, 30},
	{"checkout", "/api/pay", "POST", 120, 0.6, 0.02, 10},
	{"search", "/api/search", "GET", 45, 0.7, 0.01, 40},
	{"accounts", "/api/login", "POST", 80, 0.4, 0.03, 12},
	{"accounts", "/healthz", "GET", 1, 0.2, 0, 8},
}

var (
	agents  = []string{"Mozilla/5.0 (Macintosh)", "Mozilla/5.0 (Windows NT 10.0)", "okhttp/4.12", "curl/8.5", "Mozilla/5.0 (iPhone)"}
	regions = []string{"eu-west-1", "us-east-1", "ap-south-1"}
)

// Generator produces events. It is not safe for concurrent use.
type Generator struct {
	rng   *rand.Rand
	total int
	seq   uint64

	// OutOfOrder is the share of events whose timestamp lags by up to
	// OutOfOrderBy (they still arrive within the grace period).
	OutOfOrder   float64
	OutOfOrderBy time.Duration
	// Late is the share of events that lag by LateBy (past any reasonable
	// grace: they end up in the late topic).
	Late   float64
	LateBy time.Duration

	// Incidents, if set, recur every IncidentCycle, at offsets from the
	// first event's time: see DemoIncidents.
	Incidents     []Incident
	IncidentCycle time.Duration
	start         time.Time
}

// Incident kinds.
const (
	ErrorBurst   = "error-burst"   // the endpoint fails most requests
	LatencySpike = "latency-spike" // the endpoint is ten times slower
	Pause        = "pause"         // the endpoint receives no requests
)

// Incident is a period during which one endpoint misbehaves.
type Incident struct {
	Kind       string
	Endpoint   string
	From, To   time.Duration // offsets in the cycle
	ErrorRate  float64       // ErrorBurst
	LatencyMul float64       // LatencySpike
}

// DemoIncidents make the demo's alert rules fire and resolve within a
// minute, every minute: errors on /api/login, then slow /api/pay, then no
// traffic on /api/search.
var DemoIncidents = []Incident{
	{Kind: ErrorBurst, Endpoint: "/api/login", From: 2 * time.Second, To: 17 * time.Second, ErrorRate: 0.6},
	{Kind: LatencySpike, Endpoint: "/api/pay", From: 12 * time.Second, To: 27 * time.Second, LatencyMul: 10},
	{Kind: Pause, Endpoint: "/api/search", From: 15 * time.Second, To: 35 * time.Second},
}

// active returns the incidents in effect at now.
func (g *Generator) active(now time.Time) []Incident {
	if len(g.Incidents) == 0 || g.IncidentCycle <= 0 {
		return nil
	}
	if g.start.IsZero() {
		g.start = now
	}
	phase := now.Sub(g.start) % g.IncidentCycle
	var out []Incident
	for _, in := range g.Incidents {
		if phase >= in.From && phase < in.To {
			out = append(out, in)
		}
	}
	return out
}

// New returns a generator with the demo's defaults: 5% of events up to 3s
// out of order, 0.5% late by 40s.
func New(seed uint64) *Generator {
	g := &Generator{
		rng:          rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		OutOfOrder:   0.05,
		OutOfOrderBy: 3 * time.Second,
		Late:         0.005,
		LateBy:       40 * time.Second,
	}
	for _, r := range routes {
		g.total += r.weight
	}
	return g
}

// Next returns the event of a request that happened at about now.
func (g *Generator) Next(now time.Time) Event {
	incidents := g.active(now)
	var r route
pick:
	for {
		n := g.rng.IntN(g.total)
		for _, c := range routes {
			if n < c.weight {
				r = c
				break
			}
			n -= c.weight
		}
		for _, in := range incidents {
			if in.Kind == Pause && in.Endpoint == r.endpoint {
				continue pick
			}
		}
		break
	}
	for _, in := range incidents {
		if in.Endpoint != r.endpoint {
			continue
		}
		switch in.Kind {
		case ErrorBurst:
			r.errRate = in.ErrorRate
		case LatencySpike:
			r.medianMS *= in.LatencyMul
		}
	}
	g.seq++
	ts := now.UnixMilli()
	switch x := g.rng.Float64(); {
	case x < g.Late:
		ts -= g.LateBy.Milliseconds()
	case x < g.Late+g.OutOfOrder:
		ts -= g.rng.Int64N(max(1, g.OutOfOrderBy.Milliseconds()))
	}
	lat := r.medianMS * math.Exp(r.sigma*g.rng.NormFloat64())
	status := 200
	if g.rng.Float64() < r.errRate {
		status = []int{500, 502, 503}[g.rng.IntN(3)]
	} else if g.rng.Float64() < 0.03 {
		status = []int{400, 401, 404}[g.rng.IntN(3)]
	}
	return Event{
		TS:        ts,
		Service:   r.service,
		Endpoint:  r.endpoint,
		Method:    r.method,
		Status:    status,
		LatencyMS: math.Round(lat*100) / 100,
		UserAgent: agents[g.rng.IntN(len(agents))],
		Region:    regions[g.rng.IntN(len(regions))],
		RequestID: fmt.Sprintf("req-%08x-%06d", g.rng.Uint32(), g.seq),
	}
}

// AvroSchema is the Avro schema of Event, as `eddy demo --avro` registers it
// under "<topic>-value".
const AvroSchema = `{"type": "record", "name": "HttpRequest", "namespace": "eddy.demo",
 "doc": "One HTTP request, as eddy's event generator makes them",
 "fields": [
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "service", "type": "string"},
  {"name": "endpoint", "type": "string"},
  {"name": "method", "type": "string"},
  {"name": "status", "type": "int"},
  {"name": "latency_ms", "type": "double"},
  {"name": "user_agent", "type": "string"},
  {"name": "region", "type": "string"},
  {"name": "request_id", "type": "string"}
 ]}`

// Map returns e with the field names of AvroSchema (for an Avro encoder).
func (e Event) Map() map[string]any {
	return map[string]any{
		"ts": time.UnixMilli(e.TS).UTC(), "service": e.Service, "endpoint": e.Endpoint, "method": e.Method,
		"status": e.Status, "latency_ms": e.LatencyMS, "user_agent": e.UserAgent, "region": e.Region,
		"request_id": e.RequestID,
	}
}
