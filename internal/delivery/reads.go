package delivery

import (
	"context"
	"fmt"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Reader is who reads a channel over REST: the tenant's backend (Claims nil, any channel of
// its tenant) or an end user (Claims set, the channels its token grants).
type Reader struct {
	Tenant tenant.Tenant
	Claims *tenant.Claims
}

func (r Reader) may(channel string) error {
	if r.Claims != nil && !streamgate.Granted(r.Claims.Channels, channel) {
		return fmt.Errorf("the token does not grant channel %q: %w", channel, ErrForbidden)
	}
	return nil
}

// ReadHistory returns at most limit events of channel after the position after (a cursor a
// stream handed out, or an event id; "" for the start of the history window), oldest first.
// It returns ErrInvalid for a position this service never issued and ErrForbidden for a channel
// the reader's token does not grant.
func (s *Service) ReadHistory(ctx context.Context, r Reader, channel, after string, limit int) (stream.Page, error) {
	if err := r.may(channel); err != nil {
		return stream.Page{}, err
	}
	var epoch, id string
	if after != "" {
		if cur, ok := stream.ParseCursor(after); ok {
			epoch, id = cur.Epoch, cur.LastID
		} else if _, _, ok := stream.ParseID(after); ok {
			id = after
		} else {
			return stream.Page{}, fmt.Errorf("after must be an event id or a stream cursor: %w", ErrInvalid)
		}
	}
	return s.History.Page(ctx, r.Tenant.ID, channel, epoch, id, limit, Window(r.Tenant))
}

// ReadPresence returns the members of channel (at most presence.MaxRead of them, with the
// exact count). A channel that never kept presence has none. It returns ErrForbidden for a
// channel the reader's token does not grant.
func (s *Service) ReadPresence(ctx context.Context, r Reader, channel string) (presence.List, error) {
	if err := r.may(channel); err != nil {
		return presence.List{}, err
	}
	if s.Presence == nil {
		return presence.List{}, nil
	}
	return s.Presence.Read(ctx, r.Tenant.ID, channel, presence.MaxRead)
}

// PresenceTotals returns how many channels have members now, and how many members they have,
// per tenant.
func (s *Service) PresenceTotals(ctx context.Context, tenantIDs ...string) (map[string]presence.Totals, error) {
	if s.Presence == nil {
		return map[string]presence.Totals{}, nil
	}
	return s.Presence.Totals(ctx, tenantIDs...)
}

// PresenceBusiest returns a tenant's presence totals and its limit channels with the most
// members now.
func (s *Service) PresenceBusiest(ctx context.Context, tenantID string, limit int) (presence.Busiest, error) {
	if s.Presence == nil {
		return presence.Busiest{Channels: []presence.ChannelCount{}}, nil
	}
	return s.Presence.Busiest(ctx, tenantID, limit)
}
