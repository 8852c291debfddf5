package processor

// The identities of a worker's clients: its client id and, under
// exactly-once, its transactional id and the fencing of its previous
// incarnation.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// clientID is the Kafka client id of a pipeline's clients:
// eddy-<app>-<instance>, the instance being the --instance-id, else the
// host name (a Kubernetes pod's name), else just eddy-<app>.
func clientID(app, instanceID string, hostname func() (string, error)) string {
	inst := instanceID
	if inst == "" {
		if h, err := hostname(); err == nil {
			inst = h
		}
	}
	if inst == "" {
		return "eddy-" + app
	}
	return "eddy-" + app + "-" + inst
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fenceZombie initializes the producer id of this worker's transactional
// id before it joins the group. The broker then aborts any transaction that
// a previous incarnation with the same id left open (a crash or SIGKILL
// mid-transaction), at once instead of at its timeout, and fences that
// incarnation should it still be alive. Failure is not fatal (the broker
// may be restarting): franz-go initializes the id again before the first
// produce, and an unfenced transaction is still aborted at its timeout.
func (a *App) fenceZombie(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, a.cfg.SessionTimeout)
	defer cancel()
	if _, _, err := a.cl.ProducerID(fctx); err != nil {
		a.log.Warn("could not initialize the transactional producer yet; a transaction left open by a previous run of this worker is aborted at its timeout", "err", err)
	}
}
