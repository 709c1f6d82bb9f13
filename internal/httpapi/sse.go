package httpapi

import (
	"context"
	"net/http"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/delivery"
)

// maxQueryChannels bounds the channels one stream request may name before any other check:
// beyond every tenant's subscription cap, so it only cuts off abuse early.
const maxQueryChannels = 10_000

// streamHandler serves GET /v1/stream: the end user's Server-Sent Events stream. Refusals are
// ordinary JSON errors sent before the stream starts; after that, every notice is an SSE event.
func (s *Server) streamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			writeError(w, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "This server cannot stream responses"})
			return
		}
		if e := s.limitStreamClient(r, w.Header()); e != nil {
			writeError(w, e)
			return
		}
		st, e := s.openStream(r, w.Header())
		if e != nil {
			writeError(w, e)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		s.serveStream(w, r, st, nil)
	})
}

// serveStream writes an open stream as the response until it ends, then closes it and calls
// done (unless nil). On HTTP/1.1 it takes the connection over from net/http, writes the head
// and any replay, and returns: the stream goes on with no goroutine of its own while idle (a
// writer runs while there is something to write; the node's close watcher notices its client
// leaving), and the request's goroutine, with net/http's buffers, goes away.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, st *delivery.Stream, done func()) {
	end := func() {
		st.Close()
		if done != nil {
			done()
		}
	}
	if conn, head, ok := takeOver(w, r, &s.clients, st.Close); ok {
		if conn == nil {
			end()
			return
		}
		st.Start(newConnSink(conn, head, s.cfg.WriteTimeout), func() {
			conn.Close()
			end()
		})
		return
	}
	defer end()
	stop := context.AfterFunc(r.Context(), st.Close)
	defer stop()
	w.WriteHeader(http.StatusOK)
	st.Serve(&httpSink{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout})
}

// openStream reads the request (token, channels, cursor), authenticates it and opens the
// stream, counted against the tenant's connect rate (reported in h).
func (s *Server) openStream(r *http.Request, h http.Header) (*delivery.Stream, *Error) {
	ctx := r.Context()
	q := r.URL.Query()
	raw := bearer(r)
	if raw == "" {
		raw = q.Get("token")
	}
	if raw == "" {
		return nil, errorf(http.StatusUnauthorized, CodeUnauthorized, "Send the end-user token as Authorization: Bearer <token> or ?token=<token>")
	}
	claims, err := s.tenants.VerifyToken(ctx, raw)
	if err != nil {
		return nil, toError(s.log, err)
	}
	t, err := s.tenants.Cached(ctx, claims.TenantID)
	if err != nil {
		return nil, toError(s.log, err)
	}
	channels, e := queryChannels(q["channel"])
	if e != nil {
		return nil, e
	}
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("last_event_id")
	}
	st, err := s.streams.Open(ctx, delivery.Request{Claims: claims, Tenant: t, Channels: channels, Cursor: cursor, Rate: s.scriptRate(s.cfg.Rates.StreamTenant)})
	if e := streamTenantAnswer(h, st, err); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, toError(s.log, err)
	}
	return st, nil
}

// queryChannels validates the channels named in the query and drops duplicates.
func queryChannels(requested []string) ([]string, *Error) {
	if len(requested) > maxQueryChannels {
		return nil, errorf(http.StatusBadRequest, CodeInvalid, "A stream may name at most %d channels", maxQueryChannels)
	}
	seen := make(map[string]bool, len(requested))
	channels := make([]string, 0, len(requested))
	for _, ch := range requested {
		if !streamgate.ValidChannel(ch) {
			return nil, errorf(http.StatusBadRequest, CodeInvalid, "Channel names are 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = ,")
		}
		if !seen[ch] {
			seen[ch] = true
			channels = append(channels, ch)
		}
	}
	return channels, nil
}
