package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/topology"
)

// Open windows (GET /api/v1/windows?key=["checkout","/pay"]): the current
// aggregates of a key's windows that have not closed yet, straight from
// the state of the worker that owns the key's partition.
//
// Routing. Any worker answers: it computes the key's partition of the
// aggregation input (processor.KeyPartition, the partitioner the workers
// write the repartition topic with), asks the group's coordinator which
// member owns that partition (DescribeGroups, as the pipeline picture
// does), and reads the owner's console URL from the member's client id
// (processor.AdvertiseSuffix). If the owner is another worker, the GET is
// forwarded to it with local=1 (the owner then answers from its own state
// and never forwards again: no loops) and with the caller's Authorization
// header (the workers of a pipeline share a token). The answer names the
// worker that answered (answered_by) and, when forwarded, the one that
// forwarded (forwarded_by). Errors: 503 when the owner is not known (the
// group is rebalancing, or the owner advertises no URL), 502 when the owner
// does not answer in time.

// In a pipeline with several rollups, the rollup parameter names the
// rollup (default the first): the key is of its grouping key, routed by
// its aggregation input (its repartition topic), answered from its state,
// and forwarded with the parameter.

// WindowsJSON is the answer of GET /api/v1/windows.
type WindowsJSON struct {
	// Rollup is the rollup queried, in a pipeline with several.
	Rollup string   `json:"rollup,omitempty"`
	Key    []string `json:"key"`
	// Windows are result objects in the output's shape (key fields,
	// window_start, window_end, aggregates), oldest first; empty when the
	// key has no open window.
	Windows []json.RawMessage `json:"windows"`
	// Partition of the aggregation input that holds the key; -1 when the
	// query was answered locally without routing (no SelfURL, or local=1).
	Partition int32 `json:"partition"`
	// AnsweredBy is the console URL of the worker whose state answered.
	AnsweredBy string `json:"answered_by"`
	// ForwardedBy is the console URL of the worker that received the
	// query and forwarded it to the owner; empty when the owner received it.
	ForwardedBy string `json:"forwarded_by,omitempty"`
}

func (c *Console) handleWindows(w http.ResponseWriter, r *http.Request) {
	rs, ok := c.rollupParam(w, r)
	if !ok {
		return
	}
	var key []string
	if err := json.Unmarshal([]byte(r.URL.Query().Get("key")), &key); err != nil || len(key) != len(rs.Key) {
		writeJSON(w, http.StatusBadRequest, apiError{Error: `key: a JSON array of the key's fields (` + jsonText(rs.Key) + `), e.g. ["checkout","/pay"]`})
		return
	}
	openWindows := c.cfg.OpenWindowsIn
	if openWindows == nil && c.cfg.OpenWindows != nil && rs == c.rollups[0] {
		openWindows = func(_, key string) ([]json.RawMessage, error) { return c.cfg.OpenWindows(key) }
	}
	if openWindows == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{Error: "this server has no pipeline state"})
		return
	}
	kb, _ := json.Marshal(key) // the grouping key as eddy writes it
	part := int32(-1)
	if c.cfg.SelfURL != "" && r.URL.Query().Get("local") != "1" {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		p, owner, err := c.keyOwner(ctx, rs, string(kb))
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: fmt.Sprintf("owner of key %s unknown: %v", kb, err)})
			return
		}
		part = p
		if owner != c.cfg.SelfURL {
			c.forwardWindows(ctx, w, r, rs, owner, part)
			return
		}
	}
	wins, err := openWindows(rs.RollupName, string(kb))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	if wins == nil {
		wins = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, WindowsJSON{Rollup: rs.RollupName, Key: key, Windows: wins, Partition: part, AnsweredBy: c.cfg.SelfURL})
}

// errNoOwner: no member of the group owns the key's partition now, or the
// one that does advertises no console URL.
var errNoOwner = errors.New("no member of the group owns the partition, or its owner advertises no console URL")

// keyOwner returns the key's partition of the aggregation input of rollup
// rs and the console URL of the member that owns it.
func (c *Console) keyOwner(ctx context.Context, rs *topology.Spec, key string) (int32, string, error) {
	s := c.cfg.Spec
	topic := aggTopicsOf(rs)[0] // one topic: the repartition topic, or the one keyed source topic (topology.Validate)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...), kgo.ClientID("eddy-console-" + s.App)}, c.cfg.ClientOpts...)...)
	if err != nil {
		return -1, "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return -1, "", err
	}
	td, ok := tds[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return -1, "", fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	part := processor.KeyPartition(topic, key, len(td.Partitions))
	groups, err := adm.DescribeGroups(ctx, s.GroupID())
	if err != nil {
		return part, "", err
	}
	g, ok := groups[s.GroupID()]
	if !ok || g.Err != nil {
		return part, "", fmt.Errorf("group %s: %v", s.GroupID(), g.Err)
	}
	for _, m := range g.Members {
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range a.Topics {
			for _, p := range t.Partitions {
				if t.Topic == topic && p == part {
					if u := processor.ParseAdvertised(m.ClientID); u != "" {
						return part, u, nil
					}
					return part, "", fmt.Errorf("%s/%d: member %s: %w", topic, part, m.ClientID, errNoOwner)
				}
			}
		}
	}
	return part, "", fmt.Errorf("%s/%d: %w", topic, part, errNoOwner)
}

// forwardWindows asks the owner's console for the key's open windows with
// local=1 and passes its answer on, adding forwarded_by.
func (c *Console) forwardWindows(ctx context.Context, w http.ResponseWriter, r *http.Request, rs *topology.Spec, owner string, part int32) {
	q := url.Values{"key": {r.URL.Query().Get("key")}, "local": {"1"}}
	if rs.RollupName != "" {
		q.Set("rollup", rs.RollupName)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, owner+"/api/v1/windows?"+q.Encode(), nil)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: fmt.Sprintf("owner %s: %v", owner, err)})
		return
	}
	if h := r.Header.Get("Authorization"); h != "" {
		req.Header.Set("Authorization", h)
	}
	resp, err := c.cfg.PeerClient.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: fmt.Sprintf("owner %s unreachable: %v", owner, err)})
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: fmt.Sprintf("owner %s: %v", owner, err)})
		return
	}
	var ans WindowsJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ans) != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: fmt.Sprintf("owner %s answered %s: %.500s", owner, resp.Status, body)})
		return
	}
	ans.Partition, ans.ForwardedBy = part, c.cfg.SelfURL
	writeJSON(w, http.StatusOK, ans)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
