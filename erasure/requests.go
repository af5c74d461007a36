package erasure

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"
)

// storeShard puts one shard on p (the local store when p is this peer).
func (s *Service) storeShard(ctx context.Context, p peer.ID, h Hash, ref ShardRef, data []byte) error {
	var err error
	if p == s.h.ID() {
		err = s.store.Put(h, ref, data)
	} else {
		err = s.client.Store(ctx, p, h, ref, data)
		s.noteOutcome(ctx, p, err)
	}
	if errors.Is(err, ErrQuotaExceeded) {
		s.book.outOfQuota(p)
	}
	return err
}

// fetchShard gets one verified shard from p (or the local store).
func (s *Service) fetchShard(ctx context.Context, p peer.ID, h Hash) ([]byte, error) {
	if p == s.h.ID() {
		_, data, err := s.store.Get(h)
		return data, err
	}
	data, err := s.client.Fetch(ctx, p, h)
	s.noteOutcome(ctx, p, err)
	return data, err
}

// noteOutcome feeds a request's outcome to availability tracking and peer
// reports. A request we cancelled ourselves says nothing about the peer.
func (s *Service) noteOutcome(ctx context.Context, p peer.ID, err error) {
	switch {
	case err == nil:
		s.avail.Succeeded(p)
		s.book.answered(p)
	case errors.Is(err, ErrHashMismatch):
		// Evidence against the peer even if we no longer needed the shard.
		s.avail.Succeeded(p) // it answered: online, but lying or broken
		s.metrics.bad()
		s.book.corrupt(p)
		s.log.Warn("peer sent a shard that fails verification", "peer", p, "err", err)
	case ctx.Err() != nil:
	case errors.Is(err, ErrQuotaExceeded), errors.Is(err, ErrNotFound), errors.Is(err, ErrBusy),
		errors.Is(err, ErrUnauthorized), errors.Is(err, ErrBadMessage):
		s.avail.Succeeded(p) // a clear answer: the peer is online
		s.book.answered(p)
	default:
		s.avail.Failed(p)
		s.book.failed(p)
	}
}
