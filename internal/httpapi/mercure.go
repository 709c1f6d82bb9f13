package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/mercure"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// Each tenant's Mercure hub. Requests to it follow Mercure's conventions rather than the rest
// of the API's: form bodies, plain-text errors, tokens signed with the hub's keys.

// mercurePath is the hub's path on a tenant's own hosts; elsewhere it follows /mercure/{tenant}.
const mercurePath = "/.well-known/mercure"

// mercureCookie is the cookie browsers present their token in.
const mercureCookie = "mercureAuthorization"

// isMercurePath reports whether a path is a hub's, which answers CORS by its tenant's rules.
func isMercurePath(p string) bool {
	if rest, ok := strings.CutPrefix(p, "/mercure/"); ok {
		_, p, _ = strings.Cut(rest, "/")
		p = "/" + p
	}
	return p == mercurePath || strings.HasPrefix(p, mercurePath+"/")
}

// mercureByHost serves /.well-known/mercure on the hosts a tenant's hub claims. On any other
// host the path is what it always was: no route.
func (s *Server) mercureByHost() gin.HandlerFunc {
	return func(c *gin.Context) {
		r := c.Request
		tenantID, err := s.tenants.MercureHost(r.Context(), s.requestHost(r))
		if errors.Is(err, tenant.ErrNotFound) {
			writeError(c.Writer, errorf(http.StatusNotFound, CodeNotFound, "No route %s %s", r.Method, r.URL.Path))
			return
		}
		if err != nil {
			s.mercureFail(c.Writer, err)
			return
		}
		s.serveMercure(c, tenantID, mercurePath)
	}
}

// mercureByPath serves /mercure/{tenant}/.well-known/mercure: every tenant's hub, without DNS.
func (s *Server) mercureByPath() gin.HandlerFunc {
	return func(c *gin.Context) { s.mercureOfTenant(c, c.Param("tenant")) }
}

func (s *Server) mercureOfTenant(c *gin.Context, id string) {
	if !streamgate.ValidID(id) {
		mercureError(c.Writer, http.StatusNotFound, "No Mercure hub here")
		return
	}
	s.serveMercure(c, id, "/mercure/"+id+mercurePath)
}

// mercureRest serves what reaches a hub's paths without a route of its own (isMercurePath):
// the subscriptions API below /subscriptions, CORS preflights and other methods.
func (s *Server) mercureRest(c *gin.Context) {
	rememberClientIP(c)
	if rest, ok := strings.CutPrefix(c.Request.URL.Path, "/mercure/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		s.mercureOfTenant(c, id)
		return
	}
	s.mercureByHost()(c)
}

// serveMercure answers a request to the hub of tenantID, whose path is base.
func (s *Server) serveMercure(c *gin.Context, tenantID, base string) {
	w, r := c.Writer, c.Request
	t, err := s.tenants.Cached(r.Context(), tenantID)
	if err == nil && t.Suspended {
		err = tenant.ErrSuspended
	}
	var hub tenant.MercureHub
	if err == nil {
		hub, err = s.tenants.MercureHub(r.Context(), tenantID)
	}
	if errors.Is(err, tenant.ErrNotFound) {
		mercureError(w, http.StatusNotFound, "No Mercure hub here")
		return
	}
	if err != nil {
		s.mercureFail(w, err)
		return
	}
	w.Header().Set("Link", "<"+base+`>; rel="mercure"`)
	if s.mercureCORS(w, r, hub) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), base)
	switch {
	case ok && (rest == "/subscriptions" || strings.HasPrefix(rest, "/subscriptions/")):
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, OPTIONS")
			mercureError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
			return
		}
		s.mercureSubscriptions(w, r, hub, t, rest)
	case ok && rest == "":
		switch r.Method {
		case http.MethodGet:
			s.mercureSubscribe(w, r, hub, t)
		case http.MethodPost:
			s.mercurePublish(w, r, hub, t)
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			mercureError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		}
	default:
		mercureError(w, http.StatusNotFound, "Not Found")
	}
}

// mercureCORS answers CORS by the hub's cors_origins: a listed origin may send credentials
// (the cookie); with none listed, or "*", any origin may call without them. It reports whether
// it answered the request (a preflight).
func (s *Server) mercureCORS(w http.ResponseWriter, r *http.Request, hub tenant.MercureHub) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	allowed := hub.Config.CORSOrigins
	switch {
	case slices.Contains(allowed, origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	case len(allowed) == 0 || slices.Contains(allowed, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	default:
		if r.Method == http.MethodOptions {
			mercureError(w, http.StatusForbidden, "Origin not allowed")
			return true
		}
		return false
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Cache-Control, Content-Type, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", "Last-Event-ID, Link, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
	return false
}

// mercurePublish serves POST: an update as a form (topic, repeatable; data; id; private; type;
// retry), answered 200 text/plain with the update's id once it is durable in the tenant's log.
func (s *Server) mercurePublish(w http.ResponseWriter, r *http.Request, hub tenant.MercureHub, t tenant.Tenant) {
	ctx := r.Context()
	claims, err := s.mercurePublisher(r, hub)
	if err != nil {
		s.mercureFail(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, publishBodyLimit)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			mercureError(w, http.StatusRequestEntityTooLarge, "The request body is over "+strconv.Itoa(publishBodyLimit)+" bytes")
			return
		}
		if bodyTimedOut(err) {
			mercureError(w, http.StatusRequestTimeout, messageBodyTimeout)
			return
		}
		mercureError(w, http.StatusBadRequest, "The body is not a valid form")
		return
	}
	form := r.PostForm
	if len(form) == 0 && !isForm(r.Header.Get("Content-Type")) {
		mercureError(w, http.StatusBadRequest, "Send the update as application/x-www-form-urlencoded")
		return
	}
	u := mercure.Update{
		Topics:  form["topic"],
		Private: len(form["private"]) > 0,
		ID:      form.Get("id"),
		Type:    form.Get("type"),
		Data:    form.Get("data"),
	}
	if v := form.Get("retry"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			mercureError(w, http.StatusBadRequest, `"retry" must be a number of milliseconds`)
			return
		}
		u.Retry = int64(min(n, math.MaxInt64)) // Validate caps what is too large to mean anything
	}
	if !utf8.ValidString(u.ID) || !utf8.ValidString(u.Type) || !allUTF8(u.Topics) {
		mercureError(w, http.StatusBadRequest, "Topics, id and type must be UTF-8")
		return
	}
	if err := u.Validate(); err != nil {
		s.mercureFail(w, err)
		return
	}
	if !mercure.MatchEvery(u.Topics, claims.Publish) {
		mercureError(w, http.StatusForbidden, "The token's mercure.publish does not allow every topic of this update")
		return
	}
	if len(u.Data) > t.Limits.MaxMessageBytes {
		mercureError(w, http.StatusRequestEntityTooLarge, "Field \"data\" is "+strconv.Itoa(len(u.Data))+" bytes; this tenant's max_message_bytes is "+strconv.Itoa(t.Limits.MaxMessageBytes))
		return
	}
	if e := s.limit(ctx, w.Header(), keys.RateLimitPublish(t.ID), 1, ratelimit.PerSecond(t.Limits.PublishPerSecond), publishRateName); e != nil {
		s.mercureFail(w, e)
		return
	}
	u.AssignID()
	if _, err := s.publisher.PublishMercure(ctx, t.ID, delivery.Window(t), u.ID, u.Encode()); err != nil {
		s.mercureFail(w, err)
		return
	}
	s.countPublished(ctx, t.ID, 1)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, u.ID)
}

// mercureSubscribe serves GET: the updates of the topic selectors, as Server-Sent Events, from
// Last-Event-ID (or lastEventID) when given. The subscriber is a session of the tenant like any
// stream: caps, backpressure, expiry, eviction and stats apply.
func (s *Server) mercureSubscribe(w http.ResponseWriter, r *http.Request, hub tenant.MercureHub, t tenant.Tenant) {
	ctx := r.Context()
	if _, ok := w.(http.Flusher); !ok {
		mercureError(w, http.StatusInternalServerError, "This server cannot stream responses")
		return
	}
	claims, err := s.mercureSubscriber(r, hub)
	if err != nil {
		s.mercureFail(w, err)
		return
	}
	q := r.URL.Query()
	topics := q["topic"]
	switch {
	case len(topics) == 0:
		mercureError(w, http.StatusBadRequest, `Missing "topic" parameter`)
		return
	case len(topics) > mercure.MaxSelectors:
		mercureError(w, http.StatusBadRequest, `Too many "topic" parameters`)
		return
	}
	for _, tp := range topics {
		if tp == "" || len(tp) > mercure.MaxSelectorLen || !utf8.ValidString(tp) {
			mercureError(w, http.StatusBadRequest, `A "topic" is 1 to `+strconv.Itoa(mercure.MaxSelectorLen)+" bytes of UTF-8")
			return
		}
	}
	if e := s.limitStreamClient(r, w.Header()); e != nil {
		s.mercureFail(w, e)
		return
	}
	if e := s.limitStreamTenant(ctx, w.Header(), t.ID); e != nil {
		s.mercureFail(w, e)
		return
	}
	lastEventID := r.Header.Get("Last-Event-ID")
	if lastEventID == "" {
		lastEventID = q.Get("lastEventID")
	}
	var (
		after string
		found bool
	)
	if lastEventID != "" {
		if after, found, err = s.history.MercurePosition(ctx, t.ID, lastEventID); err != nil {
			s.mercureFail(w, err)
			return
		}
	}
	who := tenant.Claims{TenantID: t.ID, KeyID: tenant.MercureKeyID, Sub: "anonymous"}
	var private []string
	if claims != nil {
		private, who.ExpiresAt, who.Sub = claims.Subscribe, claims.ExpiresAt, "mercure"
		if n := utf8.RuneCountInString(claims.Sub); n >= 1 && n <= streamgate.MaxSubLen {
			who.Sub = claims.Sub
		}
	}
	sub := mercure.NewSubscriber(topics, private)
	listing := mercure.Listing{Subscriber: mercure.NewSubscriberID()}
	if claims != nil {
		listing.Payload = claims.Payload
	}
	listed, _ := json.Marshal(listing)
	announce := hub.Config.SubscriptionsAPI
	if announce {
		// Announced before the subscriber is in place, as the reference hub does: it does not
		// receive its own arrival.
		s.announce(ctx, t, listing, sub.Topics(), true)
	}
	// Filed before the stream opens: an update published once the stream has its floor must
	// find it.
	s.mercure.Add(t.ID, sub)
	st, err := s.streams.Open(ctx, delivery.Request{Claims: who, Tenant: t, Log: &delivery.Log{
		Channel: stream.MercureChannel,
		Keys:    sub.Keys(),
		Topics:  sub.Topics(),
		Listing: listed,
		After:   after,
		Entry: func(e stream.Entry) *streamgate.Frame {
			u, ok := mercure.DecodeUpdate(e.Data)
			if !ok || !sub.Match(&u) {
				return nil
			}
			return u.Frame(e.Channel, e.ID, e.Seq)
		},
	}})
	gone := func() {
		s.mercure.Remove(t.ID, sub)
		if announce {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.announce(ctx, t, listing, sub.Topics(), false)
		}
	}
	if err != nil {
		gone()
		s.mercureFail(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0")
	h.Set("X-Accel-Buffering", "no")
	if lastEventID != "" {
		// The id of the update before the first one sent, or earliest when the stream does not
		// start right after the one asked for.
		resp := stream.MercureEarliest
		if found && st.Replays() && lastEventID != stream.MercureEarliest {
			resp = lastEventID
		}
		h.Set("Last-Event-ID", resp)
	}
	s.serveStream(w, r, st, gone)
}

// announce publishes the subscription events of a subscriber's arrival (active) or departure.
// They are the hub's own updates: no publisher's rate limit applies. A failure is logged: the
// subscription stands or ends all the same.
func (s *Server) announce(ctx context.Context, t tenant.Tenant, l mercure.Listing, topics []string, active bool) {
	for _, u := range l.Events(topics, active) {
		if _, err := s.publisher.PublishMercure(ctx, t.ID, delivery.Window(t), u.ID, u.Encode()); err != nil {
			s.log.Warn("publish a Mercure subscription event", "tenant", t.ID, "err", err)
			return
		}
	}
}

// mercureSubscriptions serves the subscriptions API (GET /.well-known/mercure/subscriptions,
// …/{topic}, …/{topic}/{subscriber}) where the hub turns it on: the tenant's active
// subscriptions on every node, as JSON-LD. rest is the path below the hub, escaped.
func (s *Server) mercureSubscriptions(w http.ResponseWriter, r *http.Request, hub tenant.MercureHub, t tenant.Tenant, rest string) {
	ctx := r.Context()
	if !hub.Config.SubscriptionsAPI {
		mercureError(w, http.StatusNotFound, "Not Found")
		return
	}
	segments := strings.Split(strings.TrimPrefix(rest, "/subscriptions"), "/")[1:]
	if len(segments) > 2 {
		mercureError(w, http.StatusNotFound, "Not Found")
		return
	}
	var filter [2]string // topic, subscriber
	for i, seg := range segments {
		v, err := url.QueryUnescape(seg)
		if err != nil || v == "" {
			mercureError(w, http.StatusNotFound, "Not Found")
			return
		}
		filter[i] = v
	}
	// Tokens name the API by the hub's own path, however the request reached the hub.
	if hub.SubscriberKey != nil {
		raw, _, err := mercureToken(r)
		if err == nil && raw == "" {
			err = unauthorized("The subscriptions API needs a subscriber token")
		}
		var claims mercure.Claims
		if err == nil {
			claims, err = mercure.VerifyToken(raw, hub.Config.Algorithm, hub.SubscriberKey, time.Now)
		}
		if err != nil {
			s.mercureFail(w, err)
			return
		}
		if !mercure.MatchAny([]string{mercurePath + rest}, claims.Subscribe) {
			mercureError(w, http.StatusForbidden, "The token's mercure.subscribe does not match "+mercurePath+rest)
			return
		}
	}
	last := stream.MercureEarliest
	if stored, ok, err := s.history.MercureLast(ctx, t.ID); err != nil {
		s.mercureFail(w, err)
		return
	} else if u, decoded := mercure.DecodeUpdate(stored); ok && decoded {
		last = u.ID
	}
	if r.Header.Get("If-None-Match") == last {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	sessions, err := s.streams.Sessions(ctx, t.ID)
	if err != nil {
		s.mercureFail(w, err)
		return
	}
	subs := []mercure.Subscription{}
	for _, ses := range sessions {
		var l mercure.Listing
		if len(ses.Mercure) == 0 || json.Unmarshal(ses.Mercure, &l) != nil {
			continue
		}
		if filter[1] != "" && l.Subscriber != filter[1] {
			continue
		}
		for _, sub := range l.Subscriptions(ses.Channels, true) {
			if filter[0] == "" || sub.Topic == filter[0] {
				subs = append(subs, sub)
			}
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/ld+json")
	h.Set("ETag", last)
	h.Set("Cache-Control", "must-revalidate")
	var doc any = mercure.Subscriptions{Context: mercure.JSONLDContext, ID: r.URL.RequestURI(), Type: "Subscriptions", LastEventID: last, Subscriptions: subs}
	if filter[1] != "" {
		if len(subs) == 0 {
			mercureError(w, http.StatusNotFound, "No such subscription")
			return
		}
		one := subs[0]
		one.Context, one.LastEventID = mercure.JSONLDContext, last
		doc = one
	}
	body, _ := json.Marshal(doc)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// mercurePublisher authenticates a publisher: a token is required, and one sent as a cookie
// only counts from a page of one of the hub's cors_origins (it could be a forged request).
func (s *Server) mercurePublisher(r *http.Request, hub tenant.MercureHub) (mercure.Claims, error) {
	raw, cookie, err := mercureToken(r)
	if err != nil {
		return mercure.Claims{}, err
	}
	if raw == "" {
		return mercure.Claims{}, unauthorized("Publishing needs a token: Authorization: Bearer <token>")
	}
	if cookie && !originAllowed(r, hub.Config.CORSOrigins) {
		return mercure.Claims{}, unauthorized("A token in a cookie counts only from a page of one of the hub's cors_origins")
	}
	c, err := mercure.VerifyToken(raw, hub.Config.Algorithm, hub.PublisherKey, time.Now)
	if err != nil {
		return mercure.Claims{}, err
	}
	if c.Publish == nil {
		return mercure.Claims{}, unauthorized("The token has no mercure.publish claim")
	}
	return c, nil
}

// mercureSubscriber authenticates a subscriber: nil claims for an anonymous one (where the hub
// allows them). A hub without a subscriber key takes anonymous subscribers only and reads no
// token.
func (s *Server) mercureSubscriber(r *http.Request, hub tenant.MercureHub) (*mercure.Claims, error) {
	if hub.SubscriberKey == nil {
		return nil, nil
	}
	raw, _, err := mercureToken(r)
	if err != nil {
		return nil, err
	}
	if raw == "" {
		if hub.Config.Anonymous {
			return nil, nil
		}
		return nil, unauthorized("This hub needs a subscriber token: Authorization: Bearer <token>, the mercureAuthorization cookie or ?authorization=")
	}
	c, err := mercure.VerifyToken(raw, hub.Config.Algorithm, hub.SubscriberKey, time.Now)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// mercureToken finds the token a request presents, in the protocol's order: the Authorization
// header, else the authorization query parameter, else the cookie. It returns "" for none.
func mercureToken(r *http.Request) (raw string, cookie bool, err error) {
	if vs, ok := r.Header["Authorization"]; ok {
		if len(vs) != 1 || len(vs[0]) < 8 || !strings.EqualFold(vs[0][:7], "bearer ") {
			return "", false, unauthorized("The Authorization header must be Bearer <token>")
		}
		return strings.TrimSpace(vs[0][7:]), false, nil
	}
	if vs, ok := r.URL.Query()["authorization"]; ok {
		if len(vs) != 1 || vs[0] == "" {
			return "", false, unauthorized("The authorization parameter must hold one token")
		}
		return vs[0], false, nil
	}
	if c, err := r.Cookie(mercureCookie); err == nil && c.Value != "" {
		return c.Value, true, nil
	}
	return "", false, nil
}

// originAllowed reports whether the page that sent r (its Origin, else its Referer) is one of
// origins ("*" allows any).
func originAllowed(r *http.Request, origins []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		u, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || u.Host == "" {
			return false
		}
		origin = u.Scheme + "://" + u.Host
	}
	return slices.Contains(origins, origin) || slices.Contains(origins, "*")
}

func unauthorized(msg string) error { return fmt.Errorf("%s: %w", msg, mercure.ErrUnauthorized) }

// mercureFail answers err as Mercure does: its status, and the contract's message as plain text.
func (s *Server) mercureFail(w http.ResponseWriter, err error) {
	e := toError(s.log, err)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mercure"`)
	}
	mercureError(w, e.Status, e.Message)
}

// mercureError writes a plain-text refusal.
func mercureError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func isForm(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded")
}

func allUTF8(ss []string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// requestHost is the host a request was sent to, lower case and without a port:
// X-Forwarded-Host when a trusted proxy sent the request, else Host.
func (s *Server) requestHost(r *http.Request) string {
	host := r.Host
	if fwd := r.Header.Get("X-Forwarded-Host"); fwd != "" && s.fromTrustedProxy(r) {
		host, _, _ = strings.Cut(fwd, ",") // the first is what the client asked for
		host = strings.TrimSpace(host)
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// fromTrustedProxy reports whether the request's peer is one of the trusted proxies.
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	if len(s.trustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parsePrefixes reads addresses and CIDRs; what does not parse is left out (the configuration
// reader refuses it before).
func parsePrefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}
