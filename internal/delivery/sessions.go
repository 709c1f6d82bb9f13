package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// errStreamEnded refuses a change to a stream that ended while the change was on its way.
var errStreamEnded = fmt.Errorf("the session's stream just ended; retry: %w", ErrNotFound)

// Subscribe adds channel to a session of the token's user, on whichever node holds its stream
// (or on its record alone when no node does, so that the change holds when it resumes). The
// stream gets subscribed and, for a job or workflow, its current state. It returns ErrNotFound
// for an unknown session, ErrForbidden for another user's session or a channel the token does
// not grant, and an error wrapping session.ErrLimitExceeded at the subscription cap.
func (s *Service) Subscribe(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID, channel string) error {
	if !streamgate.Granted(claims.Channels, channel) {
		return fmt.Errorf("the token does not grant channel %q: %w", channel, ErrForbidden)
	}
	return s.change(ctx, claims, t, sessionID, channel, true)
}

// Unsubscribe removes channel from a session of the token's user, as Subscribe adds one.
// Removing a channel the session does not have changes nothing and is no error.
func (s *Service) Unsubscribe(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID, channel string) error {
	return s.change(ctx, claims, t, sessionID, channel, false)
}

// ownRecord loads the record of a session the caller's token may act on: ErrNotFound for an
// unknown session (also one of another tenant: session ids say nothing across tenants),
// ErrForbidden for another user's.
func (s *Service) ownRecord(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID string) (cluster.SessionRecord, error) {
	rec, err := s.Records.Load(ctx, t.ID, sessionID)
	if errors.Is(err, cluster.ErrSessionNotFound) {
		return rec, fmt.Errorf("no session %s (sessions last as long as their tenant's history window): %w", truncated(sessionID), ErrNotFound)
	}
	if err != nil {
		return rec, err
	}
	if rec.Sub != claims.Sub {
		return rec, fmt.Errorf("the session belongs to another user: %w", ErrForbidden)
	}
	return rec, nil
}

// recordRetries bounds how often a change is tried again when the session's record changed
// under it (the session moved to another node, or another change came first).
const recordRetries = 5

// againOnMove runs f until it does not fail with cluster.ErrRecordChanged, at most
// recordRetries times: each run reads the record afresh and goes where it now says.
func againOnMove(f func() error) error {
	var err error
	for range recordRetries {
		if err = f(); !errors.Is(err, cluster.ErrRecordChanged) {
			return err
		}
	}
	return fmt.Errorf("the session kept moving between nodes; try again: %w", stream.ErrUnavailable)
}

func (s *Service) change(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID, channel string, add bool) error {
	return againOnMove(func() error { return s.changeOnce(ctx, claims, t, sessionID, channel, add) })
}

func (s *Service) changeOnce(ctx context.Context, claims tenant.Claims, t tenant.Tenant, sessionID, channel string, add bool) error {
	rec, err := s.ownRecord(ctx, claims, t, sessionID)
	if err != nil {
		return err
	}
	c := cluster.SubscriptionChange{TenantID: t.ID, SessionID: sessionID, Channel: channel, MaxSubs: t.Limits.MaxSubscriptionsPerSession}
	if rec.NodeID == s.cfg.NodeID {
		return s.changeHere(ctx, c, add)
	}
	if add {
		err = s.Calls.Subscribe(ctx, rec.NodeID, c)
	} else {
		err = s.Calls.Unsubscribe(ctx, rec.NodeID, c)
	}
	if !errors.Is(err, cluster.ErrNoReply) {
		return fromWire(err)
	}
	alive, aerr := s.Nodes.Alive(ctx, rec.NodeID)
	if aerr != nil || alive {
		return err // the node lives but did not answer: nothing was applied
	}
	// The node is gone and its stream with it: the record is the session.
	return s.changeRecord(ctx, c, add)
}

// changeHere applies a change to a session whose record names this node.
func (s *Service) changeHere(ctx context.Context, c cluster.SubscriptionChange, add bool) error {
	st := s.live.get(c.SessionID)
	if st == nil || st.tenantID != c.TenantID {
		// Not streaming here (between a disconnect and its resume): the record is the session.
		return s.changeRecord(ctx, c, add)
	}
	if add {
		t, err := s.Tenants.Cached(ctx, c.TenantID)
		if err != nil {
			return err
		}
		return st.subscribe(ctx, c.Channel, c.MaxSubs, t.Settings)
	}
	return st.unsubscribe(ctx, c.Channel)
}

// changeRecord changes the subscriptions of a session that is not streaming anywhere.
func (s *Service) changeRecord(ctx context.Context, c cluster.SubscriptionChange, add bool) error {
	rec, err := s.Records.Load(ctx, c.TenantID, c.SessionID)
	if errors.Is(err, cluster.ErrSessionNotFound) {
		return fmt.Errorf("no such session: %w", ErrNotFound)
	}
	if err != nil {
		return err
	}
	has := slices.Contains(rec.Channels, c.Channel)
	switch {
	case add && !has:
		if len(rec.Channels) >= c.MaxSubs {
			return subscriptionCap(c.MaxSubs)
		}
		rec.Channels = append(rec.Channels, c.Channel)
		slices.Sort(rec.Channels)
	case !add && has:
		rec.Channels = slices.DeleteFunc(rec.Channels, func(ch string) bool { return ch == c.Channel })
	default:
		return nil
	}
	t, err := s.Tenants.Cached(ctx, c.TenantID)
	if err != nil {
		return err
	}
	// Only if no resume or other change came in since the record was read.
	return s.Records.SetChannels(ctx, c.TenantID, c.SessionID, cluster.Expect{Node: rec.NodeID, Version: rec.Version}, rec.Channels, recordTTL(t))
}

func subscriptionCap(max int) error {
	return fmt.Errorf("a session may subscribe to at most %d channels: %w", max, session.ErrLimitExceeded)
}

// subscribe adds a channel to the live stream: the registry's cap, this node's pub/sub, the
// record, then the notice and, for jobs and workflows, the current state; on a channel that
// keeps presence (by settings), the session counts there.
func (st *Stream) subscribe(ctx context.Context, channel string, maxSubs int, settings tenant.Settings) error {
	s := st.svc
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errStreamEnded
	}
	added, err := st.sess.Subscribe(channel, maxSubs)
	switch {
	case errors.Is(err, session.ErrLimitExceeded):
		return subscriptionCap(maxSubs)
	case errors.Is(err, session.ErrNotFound):
		return errStreamEnded
	case err != nil:
		return err
	}
	if added {
		if err := s.Hub.Acquire(ctx, st.tenantID, channel); err != nil {
			_, _ = st.sess.Unsubscribe(channel)
			return err
		}
		st.acquired = append(st.acquired, channel)
	}
	if err := st.saveChannels(ctx); err != nil {
		if added {
			// The record did not take it (the session resumed elsewhere): neither does the stream.
			_, _ = st.sess.Unsubscribe(channel)
			st.acquired = st.acquired[:len(st.acquired)-1]
			s.Hub.Release(st.tenantID, channel)
		}
		return err
	}
	_ = s.Registry.Send(st.sess.ID(), channelNotice(streamgate.EventSubscribed, channel))
	if added {
		st.enterLocked(ctx, settings, []string{channel})
	}
	// Live changes of the channel already flow; its state read now is at least as new as any
	// of them queued so far, and the writer skips those older than what it wrote.
	e, ok, err := s.History.State(ctx, st.tenantID, channel)
	if err != nil {
		return err
	}
	if ok {
		_ = s.Registry.Send(st.sess.ID(), st.stateFrame(e))
	}
	return nil
}

// saveChannels writes the live stream's channels to its record, if the record still names
// this node: once the session resumed on another node, that node's stream is the session and
// this one is on its way out (cluster.ErrRecordChanged).
func (st *Stream) saveChannels(ctx context.Context) error {
	return st.svc.Records.SetChannels(ctx, st.tenantID, st.sess.ID(), cluster.Expect{Node: st.svc.cfg.NodeID}, st.sess.Channels(), st.ttl)
}

func (st *Stream) unsubscribe(ctx context.Context, channel string) error {
	s := st.svc
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errStreamEnded
	}
	removed, err := st.sess.Unsubscribe(channel)
	if err != nil {
		return errStreamEnded
	}
	if !removed {
		return nil
	}
	if i := slices.Index(st.acquired, channel); i >= 0 {
		st.acquired = slices.Delete(st.acquired, i, i+1)
		s.Hub.Release(st.tenantID, channel)
	}
	st.exitLocked(ctx, []string{channel})
	if err := st.saveChannels(ctx); err != nil {
		return err
	}
	_ = s.Registry.Send(st.sess.ID(), channelNotice(streamgate.EventUnsubscribed, channel))
	return nil
}

// Evict closes a session wherever it streams with disconnect (reconnect: false) and forgets its
// record, so that the client's automatic reconnect starts afresh instead of resuming. It
// returns ErrNotFound when no node streams it.
func (s *Service) Evict(ctx context.Context, sessionID string) error {
	var mu sync.Mutex
	found := false
	err := s.everyNode(ctx, func(ctx context.Context, nodeID string) error {
		var err error
		if nodeID == s.cfg.NodeID {
			err = s.evictHere(ctx, sessionID)
		} else {
			err = fromWire(s.Calls.Evict(ctx, nodeID, sessionID))
		}
		switch {
		case err == nil:
			mu.Lock()
			found = true
			mu.Unlock()
			return nil
		case errors.Is(err, ErrNotFound), errors.Is(err, cluster.ErrNoReply):
			return nil
		default:
			return err
		}
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no live session %s on any node: %w", truncated(sessionID), ErrNotFound)
	}
	return nil
}

func (s *Service) evictHere(ctx context.Context, sessionID string) error {
	st := s.live.get(sessionID)
	// Close reports false for a session already closed whose stream is still winding down.
	if st == nil || !s.Registry.Close(sessionID, session.Disconnect(streamgate.ReasonEvicted, false)) {
		return fmt.Errorf("not streaming on this node: %w", ErrNotFound)
	}
	s.log.Info("session evicted by operator", "tenant", st.tenantID, "session", sessionID)
	return s.Records.Delete(ctx, st.tenantID, sessionID)
}

// Sessions lists a tenant's live sessions on every node, oldest first.
func (s *Service) Sessions(ctx context.Context, tenantID string) ([]cluster.SessionSummary, error) {
	var mu sync.Mutex
	all := []cluster.SessionSummary{}
	err := s.everyNode(ctx, func(ctx context.Context, nodeID string) error {
		var got []cluster.SessionSummary
		if nodeID == s.cfg.NodeID {
			got = s.sessionsHere(tenantID)
		} else {
			var err error
			if got, err = s.Calls.Sessions(ctx, nodeID, tenantID); err != nil {
				if errors.Is(err, cluster.ErrNoReply) {
					return nil // a node that just died has no sessions worth listing
				}
				return fromWire(err)
			}
		}
		mu.Lock()
		all = append(all, got...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].ConnectedAt.Equal(all[j].ConnectedAt) {
			return all[i].ConnectedAt.Before(all[j].ConnectedAt)
		}
		return all[i].ID < all[j].ID
	})
	return all, nil
}

func (s *Service) sessionsHere(tenantID string) []cluster.SessionSummary {
	infos := s.Registry.Sessions(tenantID)
	out := make([]cluster.SessionSummary, len(infos))
	for i, in := range infos {
		sum := cluster.SessionSummary{ID: in.ID, Sub: in.Sub, NodeID: s.cfg.NodeID, ConnectedAt: in.ConnectedAt, Channels: in.Channels, Dropped: in.Dropped}
		if st := s.live.get(in.ID); st != nil {
			if !st.connectedAt.IsZero() {
				sum.ConnectedAt = st.connectedAt
			}
			if st.log != nil {
				sum.Channels, sum.Mercure = st.log.Topics, st.log.Listing
			}
		}
		sum.ConnectedAt, sum.Channels = sum.ConnectedAt.UTC(), nonNil(sum.Channels)
		out[i] = sum
	}
	return out
}

// everyNode runs fn for this node and for every other live node, in parallel.
func (s *Service) everyNode(ctx context.Context, fn func(ctx context.Context, nodeID string) error) error {
	nodes, err := s.Nodes.Nodes(ctx)
	if err != nil {
		return err
	}
	ids := []string{s.cfg.NodeID}
	for _, n := range nodes {
		if n.ID != s.cfg.NodeID {
			ids = append(ids, n.ID)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, id := range ids {
		g.Go(func() error { return fn(gctx, id) })
	}
	return g.Wait()
}

// NodeHandler returns what runs other nodes' calls against this node's streams.
func (s *Service) NodeHandler() cluster.Handler { return nodeHandler{s} }

type nodeHandler struct{ s *Service }

func (h nodeHandler) Subscribe(ctx context.Context, c cluster.SubscriptionChange) error {
	return toWire(h.s.changeHere(ctx, c, true))
}

func (h nodeHandler) Unsubscribe(ctx context.Context, c cluster.SubscriptionChange) error {
	return toWire(h.s.changeHere(ctx, c, false))
}

func (h nodeHandler) Evict(ctx context.Context, sessionID string) error {
	return toWire(h.s.evictHere(ctx, sessionID))
}

func (h nodeHandler) RefreshToken(ctx context.Context, r cluster.TokenRefresh) error {
	return toWire(h.s.refreshHere(ctx, r))
}

func (h nodeHandler) Sessions(_ context.Context, tenantID string) ([]cluster.SessionSummary, error) {
	return h.s.sessionsHere(tenantID), nil
}

// wireErrors are the refusals that cross between nodes, by their code on the wire.
var wireErrors = []struct {
	code string
	err  error
}{
	{"not_found", ErrNotFound},
	{"forbidden", ErrForbidden},
	{"limit_exceeded", session.ErrLimitExceeded},
	{"unavailable", stream.ErrUnavailable},
	{"record_changed", cluster.ErrRecordChanged},
}

// toWire turns a refusal into what the calling node turns back into the same error.
func toWire(err error) error {
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return &cluster.RemoteError{Code: w.code, Message: strings.TrimSuffix(err.Error(), ": "+w.err.Error())}
		}
	}
	return err
}

// fromWire turns a refusal another node sent back into the error it stood for there.
func fromWire(err error) error {
	var re *cluster.RemoteError
	if !errors.As(err, &re) {
		return err
	}
	for _, w := range wireErrors {
		if re.Code == w.code {
			return fmt.Errorf("%s: %w", re.Message, w.err)
		}
	}
	return err
}

func truncated(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("delivery: encode: " + err.Error())
	}
	return b
}
