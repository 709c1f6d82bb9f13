package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/tenant"
	"github.com/streamgate/streamgate/internal/webhook"
)

// requireAdmin lets only the operator's admin token through.
func (s *Server) requireAdmin() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.isAdmin(c.Request) {
			s.abort(c, errorf(http.StatusUnauthorized, CodeUnauthorized, "Send the admin token as Authorization: Bearer <token>"))
			return
		}
		c.Next()
	}
}

// adminStats is the dashboard's whole picture.
type adminStats struct {
	GeneratedAt time.Time         `json:"generated_at"`
	Totals      adminTotals       `json:"totals"`
	Nodes       []adminNode       `json:"nodes"`
	Tenants     []adminTenantStat `json:"tenants"`
}

type adminTotals struct {
	Tenants        int    `json:"tenants"`
	Nodes          int    `json:"nodes"`
	Connections    int    `json:"connections"`
	Subscriptions  int    `json:"subscriptions"`
	PublishedTotal int64  `json:"published_total"`
	DeliveredTotal uint64 `json:"delivered_total"`
	DroppedTotal   uint64 `json:"dropped_total"`
	EvictedTotal   uint64 `json:"evicted_total"`
	// PresenceChannels is how many channels have members now.
	PresenceChannels int64 `json:"presence_channels"`
	// PresenceMembers is how many members those channels have now, summed over the channels.
	PresenceMembers int64 `json:"presence_members"`
	// WebhooksDead is how many dead webhook deliveries the endpoints keep.
	WebhooksDead int64 `json:"webhooks_dead"`
}

type adminNode struct {
	ID            string    `json:"id"`
	Connections   int       `json:"connections"`
	Subscriptions int       `json:"subscriptions"`
	StartedAt     time.Time `json:"started_at"`
	LastSeen      time.Time `json:"last_seen"`
}

type adminTenantStat struct {
	ID             string        `json:"id"`
	Name           string        `json:"name"`
	Suspended      bool          `json:"suspended"`
	Connections    int           `json:"connections"`
	Subscriptions  int           `json:"subscriptions"`
	Limits         tenant.Limits `json:"limits"`
	PublishedTotal int64         `json:"published_total"`
	DeliveredTotal uint64        `json:"delivered_total"`
	DroppedTotal   uint64        `json:"dropped_total"`
	EvictedTotal   uint64        `json:"evicted_total"`
	// PresenceChannels is how many of the tenant's channels have members now.
	PresenceChannels int64 `json:"presence_channels"`
	// PresenceMembers is how many members they have now, summed over the channels.
	PresenceMembers int64 `json:"presence_members"`
	// WebhooksDead is how many dead deliveries the tenant's webhook endpoints keep.
	WebhooksDead int64 `json:"webhooks_dead"`
}

// statsCache shares one computation of the cluster's figures between every viewer for a second.
type statsCache struct {
	mu    sync.Mutex
	at    time.Time
	stats adminStats
}

func (s *Server) clusterStats(ctx context.Context) (adminStats, error) {
	s.statsCache.mu.Lock()
	defer s.statsCache.mu.Unlock()
	if time.Since(s.statsCache.at) < time.Second {
		return s.statsCache.stats, nil
	}
	nodes, err := s.cluster.Nodes(ctx)
	if err != nil {
		return adminStats{}, err
	}
	tenants, err := s.tenants.List(ctx)
	if err != nil {
		return adminStats{}, err
	}
	ids := make([]string, len(tenants))
	for i, t := range tenants {
		ids[i] = t.ID
	}
	counters, err := s.cluster.Counters(ctx, ids...)
	if err != nil {
		return adminStats{}, err
	}
	published, err := s.publisher.PublishedMany(ctx, ids...)
	if err != nil {
		return adminStats{}, err
	}
	presence, err := s.streams.PresenceTotals(ctx, ids...)
	if err != nil {
		return adminStats{}, err
	}
	dead, err := s.webhooks.DeadCounts(ctx, ids...)
	if err != nil {
		return adminStats{}, err
	}
	out := adminStats{GeneratedAt: time.Now().UTC(), Nodes: []adminNode{}, Tenants: make([]adminTenantStat, len(tenants))}
	usage := map[string]cluster.TenantReport{}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, adminNode{ID: n.ID, Connections: n.Connections, Subscriptions: n.Subscriptions, StartedAt: n.StartedAt, LastSeen: n.LastSeen})
		out.Totals.Connections += n.Connections
		out.Totals.Subscriptions += n.Subscriptions
		for id, u := range n.Tenants {
			sum := usage[id]
			sum.Connections += u.Connections
			sum.Subscriptions += u.Subscriptions
			usage[id] = sum
		}
	}
	for i, t := range tenants {
		c := counters[t.ID]
		out.Tenants[i] = adminTenantStat{
			ID: t.ID, Name: t.Name, Suspended: t.Suspended, Limits: t.Limits,
			Connections: usage[t.ID].Connections, Subscriptions: usage[t.ID].Subscriptions,
			PublishedTotal: published[t.ID], DeliveredTotal: c.Delivered, DroppedTotal: c.Dropped, EvictedTotal: c.Evicted,
			PresenceChannels: presence[t.ID].Channels, PresenceMembers: presence[t.ID].Members,
			WebhooksDead: dead[t.ID],
		}
		out.Totals.PresenceChannels += presence[t.ID].Channels
		out.Totals.PresenceMembers += presence[t.ID].Members
		out.Totals.WebhooksDead += dead[t.ID]
		out.Totals.PublishedTotal += published[t.ID]
		out.Totals.DeliveredTotal += c.Delivered
		out.Totals.DroppedTotal += c.Dropped
		out.Totals.EvictedTotal += c.Evicted
	}
	out.Totals.Tenants, out.Totals.Nodes = len(tenants), len(nodes)
	s.statsCache.stats, s.statsCache.at = out, time.Now()
	return out, nil
}

func (s *Server) handleAdminStats() gin.HandlerFunc {
	return func(c *gin.Context) {
		st, err := s.clusterStats(c.Request.Context())
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, st)
	}
}

// adminStatsStream sends the stats object as `event: stats` once a second until the client
// leaves or the node stops.
func (s *Server) adminStatsStream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		var buf []byte
		send := func() error {
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			st, err := s.clusterStats(r.Context())
			if err != nil {
				buf = streamgate.AppendComment(buf[:0], "stats unavailable")
			} else {
				data, _ := json.Marshal(st)
				buf = streamgate.AppendEvent(buf[:0], streamgate.EventStats, string(data))
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
			return rc.Flush()
		}
		if _, err := w.Write(streamgate.AppendRetry(nil, 2*time.Second)); err != nil || send() != nil {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if send() != nil {
					return
				}
			case <-r.Context().Done():
				return
			case <-s.streams.Stopping():
				return
			}
		}
	})
}

type adminTenant struct {
	tenantView
	Suspended bool `json:"suspended"`
	Usage     struct {
		Connections   int `json:"connections"`
		Subscriptions int `json:"subscriptions"`
	} `json:"usage"`
	PublishedTotal   int64 `json:"published_total"`
	PresenceChannels int64 `json:"presence_channels"`
	PresenceMembers  int64 `json:"presence_members"`
	cluster.Counters
}

func (s *Server) adminTenantView(ctx context.Context, t tenant.Tenant) (adminTenant, error) {
	out := adminTenant{tenantView: viewTenant(t), Suspended: t.Suspended}
	var err error
	out.Usage.Connections, out.Usage.Subscriptions, err = s.streams.Usage(ctx, t.ID)
	if err != nil {
		return out, err
	}
	counters, err := s.cluster.Counters(ctx, t.ID)
	if err != nil {
		return out, err
	}
	out.Counters = counters[t.ID]
	presence, err := s.streams.PresenceTotals(ctx, t.ID)
	if err != nil {
		return out, err
	}
	out.PresenceChannels, out.PresenceMembers = presence[t.ID].Channels, presence[t.ID].Members
	out.PublishedTotal, err = s.publisher.Published(ctx, t.ID)
	return out, err
}

// tenantParam loads the tenant the route's :id names; when it cannot, it has answered.
func (s *Server) tenantParam(c *gin.Context) (tenant.Tenant, bool) {
	t, err := s.tenants.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return t, false
	}
	return t, true
}

func (s *Server) handleAdminTenant() gin.HandlerFunc {
	return func(c *gin.Context) {
		t, ok := s.tenantParam(c)
		if !ok {
			return
		}
		v, err := s.adminTenantView(c.Request.Context(), t)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, v)
	}
}

func (s *Server) handleAdminPatchTenant() gin.HandlerFunc {
	type request struct {
		Limits    *tenant.LimitsPatch `json:"limits"`
		Suspended *bool               `json:"suspended"`
	}
	return func(c *gin.Context) {
		var req request
		if e := decodeJSON(c.Request, smallBodyLimit, &req, false); e != nil {
			s.abort(c, e)
			return
		}
		if req.Limits == nil && req.Suspended == nil {
			s.abort(c, errorf(http.StatusBadRequest, CodeInvalid, "Send \"limits\" and/or \"suspended\""))
			return
		}
		var patch tenant.LimitsPatch
		if req.Limits != nil {
			patch = *req.Limits
		}
		t, err := s.tenants.Update(c.Request.Context(), c.Param("id"), patch, req.Suspended)
		if err != nil {
			s.fail(c, err)
			return
		}
		if t.Suspended {
			// This node at once; the others hear it on the control channel.
			s.streams.Control(tenant.Event{Type: tenant.EventSuspended, TenantID: t.ID})
		}
		s.log.Info("tenant changed by operator", "tenant", t.ID, "suspended", t.Suspended)
		v, err := s.adminTenantView(c.Request.Context(), t)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, v)
	}
}

func (s *Server) handleAdminSessions() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		t, ok := s.tenantParam(c)
		if !ok {
			return
		}
		all, err := s.streams.Sessions(ctx, t.ID)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"sessions": all})
	}
}

func (s *Server) handleAdminEvict() gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.streams.Evict(c.Request.Context(), c.Param("id")); err != nil {
			s.fail(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// Bounds of the tenant page's lists.
const (
	// adminPresenceChannels is how many of a tenant's busiest presence channels its page lists.
	adminPresenceChannels = 100
	// adminWebhookFailures is how many of a tenant's recent webhook failures its page lists.
	adminWebhookFailures = 20
)

type adminChannelPresence struct {
	Channel string `json:"channel"`
	Members int64  `json:"members"`
}

// handleAdminPresence lists the tenant's busiest presence channels with its totals.
func (s *Server) handleAdminPresence() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		t, ok := s.tenantParam(c)
		if !ok {
			return
		}
		b, err := s.streams.PresenceBusiest(ctx, t.ID, adminPresenceChannels)
		if err != nil {
			s.fail(c, err)
			return
		}
		channels := make([]adminChannelPresence, len(b.Channels))
		for i, ch := range b.Channels {
			channels[i] = adminChannelPresence{Channel: ch.Channel, Members: ch.Members}
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{
			"presence_channels": b.Totals.Channels, "presence_members": b.Totals.Members,
			"channels": channels, "truncated": b.Totals.Channels > int64(len(channels)),
		})
	}
}

type adminWebhook struct {
	webhook.Endpoint
	DisabledReason *string          `json:"disabled_reason"`
	DeadInARow     int64            `json:"dead_in_a_row"`
	Dead           int64            `json:"dead"`
	LastSuccess    *webhook.Attempt `json:"last_success"`
	LastFailure    *webhook.Attempt `json:"last_failure"`
}

type adminWebhookFailure struct {
	WebhookID string `json:"webhook_id"`
	URL       string `json:"url"`
	webhook.Attempt
}

// handleAdminWebhooks reports how the tenant's webhook endpoints fare.
func (s *Server) handleAdminWebhooks() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		t, ok := s.tenantParam(c)
		if !ok {
			return
		}
		h, err := s.webhooks.Health(ctx, t.ID, adminWebhookFailures)
		if err != nil {
			s.fail(c, err)
			return
		}
		endpoints := make([]adminWebhook, len(h.Endpoints))
		for i, e := range h.Endpoints {
			endpoints[i] = adminWebhook{Endpoint: e.Endpoint, DeadInARow: e.DeadInARow, Dead: e.Dead, LastSuccess: e.LastSuccess, LastFailure: e.LastFailure}
			if e.DisabledReason != "" {
				endpoints[i].DisabledReason = &e.DisabledReason
			}
		}
		failures := make([]adminWebhookFailure, len(h.Failures))
		for i, f := range h.Failures {
			failures[i] = adminWebhookFailure{WebhookID: f.WebhookID, URL: f.URL, Attempt: f.Attempt}
		}
		writeJSON(c.Writer, http.StatusOK, gin.H{"webhooks": endpoints, "recent_failures": failures, "dead": h.Dead})
	}
}
