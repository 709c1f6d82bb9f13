package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/tenant"
)

// RefreshToken gives a session of the token's user that token, on whichever node holds its
// stream: the session expires with it from now on (earlier or later than before), and its
// channels that the token no longer grants are removed (the stream gets unsubscribed for each).
// A session between a disconnect and its resume has its record trimmed alike; the resume then
// presents the new token. It returns ErrNotFound for an unknown session (also one of another
// tenant: session ids say nothing across tenants) and ErrForbidden for another user's.
func (s *Service) RefreshToken(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID string) error {
	return againOnMove(func() error { return s.refreshOnce(ctx, claims, t, sessionID) })
}

func (s *Service) refreshOnce(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID string) error {
	rec, err := s.ownRecord(ctx, claims, t, sessionID)
	if err != nil {
		return err
	}
	r := cluster.TokenRefresh{TenantID: t.ID, SessionID: sessionID, KeyID: claims.KeyID, Grants: claims.Channels, ExpiresAt: claims.ExpiresAt}
	if rec.NodeID == s.cfg.NodeID {
		return s.refreshHere(ctx, r)
	}
	err = s.Calls.RefreshToken(ctx, rec.NodeID, r)
	if !errors.Is(err, cluster.ErrNoReply) {
		return fromWire(err)
	}
	alive, aerr := s.Nodes.Alive(ctx, rec.NodeID)
	if aerr != nil || alive {
		return err // the node lives but did not answer: nothing was applied
	}
	return s.refreshRecord(ctx, r) // the node is gone and its stream with it
}

// refreshHere applies a refresh to a session whose record names this node.
func (s *Service) refreshHere(ctx context.Context, r cluster.TokenRefresh) error {
	if st := s.live.get(r.SessionID); st != nil && st.tenantID == r.TenantID {
		err := st.refresh(ctx, r)
		if !errors.Is(err, errStreamEnded) {
			return err
		}
	}
	// Not streaming here (between a disconnect and its resume): the record is the session.
	return s.refreshRecord(ctx, r)
}

// refreshRecord trims the channels of a session that is not streaming anywhere to the grants
// of its new token.
func (s *Service) refreshRecord(ctx context.Context, r cluster.TokenRefresh) error {
	rec, err := s.Records.Load(ctx, r.TenantID, r.SessionID)
	if errors.Is(err, cluster.ErrSessionNotFound) {
		return fmt.Errorf("no such session: %w", ErrNotFound)
	}
	if err != nil {
		return err
	}
	kept := slices.DeleteFunc(slices.Clone(rec.Channels), func(ch string) bool { return !streamgate.Granted(r.Grants, ch) })
	if len(kept) == len(rec.Channels) {
		return nil
	}
	t, err := s.Tenants.Cached(ctx, r.TenantID)
	if err != nil {
		return err
	}
	return s.Records.SetChannels(ctx, r.TenantID, r.SessionID, cluster.Expect{Node: rec.NodeID, Version: rec.Version}, kept, recordTTL(t))
}

// refresh gives the live stream its new token, then removes the channels it no longer grants:
// the registry, this node's pub/sub, an unsubscribed notice for each, then the record.
func (st *Stream) refresh(ctx context.Context, r cluster.TokenRefresh) error {
	s := st.svc
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errStreamEnded
	}
	if err := st.sess.Refresh(r.ExpiresAt, r.KeyID); err != nil {
		return errStreamEnded
	}
	var removed []string
	for _, ch := range st.sess.Channels() {
		if streamgate.Granted(r.Grants, ch) {
			continue
		}
		if ok, err := st.sess.Unsubscribe(ch); err != nil || !ok {
			continue
		}
		removed = append(removed, ch)
		if i := slices.Index(st.acquired, ch); i >= 0 {
			st.acquired = slices.Delete(st.acquired, i, i+1)
			s.Hub.Release(st.tenantID, ch)
		}
	}
	if len(removed) == 0 {
		return nil
	}
	st.exitLocked(ctx, removed)
	// The stream has lost them whatever the record says: it is told first.
	for _, ch := range removed {
		_ = s.Registry.Send(st.sess.ID(), channelNotice(streamgate.EventUnsubscribed, ch))
	}
	return st.saveChannels(ctx)
}
