package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/bytesize"
)

// stateTimeout bounds one state request: a Get may have to try several
// holders, a Put to place shards on new peers.
const stateTimeout = 2 * time.Minute

// maxPutBytes bounds the request bodies of state writes buffered at once.
const maxPutBytes = 512 << 20

func (a *api) putBudget() int64 { return max(maxPutBytes, a.n.cfg.State.MaxValueSize) }

// minTransferRate is the slowest a client may send or receive a body: a
// client trickling bytes (slowloris) is cut off rather than holding its
// buffer and connection for ever.
const minTransferRate = 64 << 10 // bytes per second

// transferTime is how long a body of n bytes may take.
func transferTime(n int64) time.Duration {
	return 30*time.Second + time.Duration(n/minTransferRate)*time.Second
}

// noKey answers /v1/state without a key.
func (a *api) noKey(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, errors.New("no key given: use /v1/state/{key}"))
}

// stateKey returns the request's key, or answers 400 and false if it is
// not a valid key. Keys may not contain '/' (see erasure.ValidateKey): a
// path with more segments than the endpoint's names an invalid key.
func stateKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.PathValue("key")
	if err := erasure.ValidateKey(key); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid key %q: keys are 1 to %d characters of A-Z a-z 0-9 . _ : - (no '/')", key, erasure.MaxKeyLen))
		return "", false
	}
	return key, true
}

// putState stores the body: PUT /v1/state/{key}.
func (a *api) putState(w http.ResponseWriter, r *http.Request) {
	key, ok := stateKey(w, r)
	if !ok {
		return
	}
	if err := checkWritable(key); err != nil { // before reading the body
		a.writeStateError(w, key, err)
		return
	}
	max := a.n.cfg.State.MaxValueSize
	// Reserve the body's bytes before reading it: PUTs in flight buffer at
	// most maxPutBytes between them (one maximum-size value if larger).
	reserve := max
	if r.ContentLength >= 0 && r.ContentLength < max {
		reserve = r.ContentLength
	}
	reserve = min(reserve, a.putBudget())
	if !a.puts.TryAcquire(reserve) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("too many state writes in flight (%s buffered at most): retry later", bytesize.Format(a.putBudget())))
		return
	}
	defer a.puts.Release(reserve)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(transferTime(reserve)))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("value exceeds the maximum of %s", bytesize.Format(max)))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	res, err := a.n.Put(ctx, key, body)
	if err != nil {
		a.writeStateError(w, key, err)
		return
	}
	holders := make([]string, len(res.Holders))
	for i, h := range res.Holders {
		holders[i] = h.String()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"key": key, "version": res.Version, "size": res.Size, "k": res.K, "m": res.M,
		"holders": holders, "probability": res.Prob, "target_met": res.TargetMet,
	})
}

// getState returns the value: GET /v1/state/{key}.
func (a *api) getState(w http.ResponseWriter, r *http.Request) {
	key, ok := stateKey(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	v, err := a.n.Get(ctx, key)
	if err != nil {
		a.writeStateError(w, key, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(v)))
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(transferTime(int64(len(v)))))
	w.Write(v)
}

// deleteState removes the value: DELETE /v1/state/{key}.
func (a *api) deleteState(w http.ResponseWriter, r *http.Request) {
	key, ok := stateKey(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	if err := a.n.Delete(ctx, key); err != nil {
		a.writeStateError(w, key, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": key, "deleted": true})
}

// stateHealth reports reachable vs needed shards: GET /v1/state/{key}/health.
func (a *api) stateHealth(w http.ResponseWriter, r *http.Request) {
	key, ok := stateKey(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	h, err := a.n.Health(ctx, key)
	if err != nil {
		a.writeStateError(w, key, err)
		return
	}
	type holder struct {
		Index        int     `json:"index"`
		Peer         string  `json:"peer"`
		Reachable    bool    `json:"reachable"`
		Complete     bool    `json:"complete"`
		Availability float64 `json:"availability"`
		// HandedOff: the manifest's holder left on purpose and this
		// peer holds its shards now; repair will name it in the manifest.
		HandedOff bool `json:"handed_off,omitempty"`
	}
	holders := make([]holder, len(h.Holders))
	for i, hh := range h.Holders {
		holders[i] = holder{hh.Index, hh.Peer.String(), hh.Reachable, hh.Complete, hh.Availability, hh.HandedOff}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"key": key, "version": h.Version, "k": h.K, "m": h.M,
		"reachable": h.Reachable, "needed": h.Needed, "total": h.Total,
		"readable": h.Reachable >= h.Needed, "probability": h.Prob,
		"repair": h.Repair.String(), "holders": holders,
	})
}

// repairState checks and, if needed, repairs an object now:
// POST /v1/state/{key}/repair.
func (a *api) repairState(w http.ResponseWriter, r *http.Request) {
	key, ok := stateKey(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	res, err := a.n.Repair(ctx, key)
	if err != nil {
		a.writeStateError(w, key, err)
		return
	}
	plan := res.Plan
	reason := plan.Reason
	if plan.Action == erasure.RepairNow && len(res.Regenerated) < len(plan.Regenerate) {
		// The plan was to rebuild shards, but the repair rate limit
		// deferred it or some shards could not be placed: say so rather
		// than report the plan as done.
		reason = fmt.Sprintf("%s; %d of the %d shards to rebuild were regenerated (the rest wait for the repair rate limit or a peer to take them: see the logs)",
			plan.Reason, len(res.Regenerated), len(plan.Regenerate))
	}
	a.log.Info("repair requested", "key", key, "action", plan.Action.String(), "reason", reason, "regenerated", res.Regenerated, "version", res.Version)
	writeJSON(w, http.StatusOK, map[string]any{
		"key": key, "version": res.Version, "action": plan.Action.String(), "reason": reason,
		"healthy": plan.Healthy, "offline": plan.Offline, "lost": plan.Lost,
		"probability": plan.Prob, "probability_after": plan.ProbAfter, "regenerated": res.Regenerated,
	})
}

func (a *api) writeStateError(w http.ResponseWriter, key string, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, erasure.ErrInvalidKey):
		code = http.StatusBadRequest
	case errors.Is(err, ErrReservedKey):
		code = http.StatusForbidden
	case errors.Is(err, erasure.ErrNotFound):
		msg := fmt.Sprintf("not found: no value stored under key %q", key)
		if a.n.cfg.AppKeyFile == "" {
			// A volunteer's own namespace (state.go), which its operator
			// easily takes for the app's.
			msg += " in this peer's own namespace: it runs without --app-key, so it reads and writes a namespace of its own, not the app's"
		}
		writeError(w, http.StatusNotFound, errors.New(msg))
		return
	case errors.Is(err, erasure.ErrValueTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNoState):
		code = http.StatusNotImplemented
	case errors.Is(err, erasure.ErrNotEnoughPeers), errors.Is(err, erasure.ErrNotEnoughShards),
		errors.Is(err, erasure.ErrClosed), errors.Is(err, ErrClosed), errors.Is(err, erasure.ErrBusy):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	writeError(w, code, err)
}
