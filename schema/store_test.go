package schema

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestServerConcurrentRegistration: registrations racing on one server get
// distinct ids and dense versions, and a restart agrees.
func TestServerConcurrentRegistration(t *testing.T) {
	c := testCluster(t)
	base, _, stop := testServer(t, c)
	cl := testClient(t, base)
	ctx := context.Background()
	const n = 8
	ids := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each adds a field with a default: all BACKWARD compatible
			// with each other in any order.
			text := fmt.Sprintf(`{"type":"record","name":"R","fields":[{"name":"f%d","type":"int","default":0}]}`, i)
			id, err := cl.Register(ctx, "shared", text)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, id := range ids {
		if id < 1 || id > n || seen[id] {
			t.Errorf("ids %v are not 1..%d, distinct", ids, n)
			break
		}
		seen[id] = true
	}
	stop()
	base2, _, _ := testServer(t, c)
	var versions []int
	call(t, "GET", base2+"/subjects/shared/versions", nil, &versions)
	if len(versions) != n || versions[0] != 1 || versions[n-1] != n {
		t.Errorf("versions after restart = %v", versions)
	}
}

// TestServerCatchesUpBeforeWriting: a change written by another instance
// is read before the next id is chosen (instances taking turns).
func TestServerCatchesUpBeforeWriting(t *testing.T) {
	c := testCluster(t)
	baseA, _, _ := testServer(t, c)
	baseB, _, _ := testServer(t, c)
	var a, b struct{ ID int }
	call(t, "POST", baseA+"/subjects/x/versions", map[string]string{"schema": `"string"`}, &a)
	call(t, "POST", baseB+"/subjects/y/versions", map[string]string{"schema": `"long"`}, &b)
	if a.ID != 1 || b.ID != 2 {
		t.Errorf("ids %d and %d, want 1 and 2", a.ID, b.ID)
	}
	var subjects []string
	call(t, "GET", baseB+"/subjects", nil, &subjects)
	if len(subjects) != 2 {
		t.Errorf("B after writing sees %v, want x and y", subjects)
	}
}

// TestServerStoreError: a write Kafka refuses is a 50001 and changes
// nothing; the next one works.
func TestServerStoreError(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRecord.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	wantErr(t, "POST", base+"/subjects/x/versions", map[string]string{"schema": `"string"`}, 500, 50001)
	wantErr(t, "GET", base+"/subjects/x/versions", nil, 404, 40401)
	var got struct{ ID int }
	if st, b := call(t, "POST", base+"/subjects/x/versions", map[string]string{"schema": `"string"`}, &got); st != 200 || got.ID != 1 {
		t.Errorf("after the refused write: %d %s", st, b)
	}
}
