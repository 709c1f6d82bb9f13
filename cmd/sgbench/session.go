package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/streamgate/streamgate/internal/sseclient"
)

// session is one SSE stream a worker holds open.
type session struct {
	url         string
	token       string // empty: signed at dial time by sign
	sign        func() (string, error)
	tally       tally
	started     int64 // unix ns of the dial
	established int64 // unix ns of the connected event; 0 if it never came
}

// run opens the stream, reports the outcome of connecting through resolved (exactly once), and
// then counts events until ctx ends or the server closes the stream.
func (s *session) run(ctx context.Context, w *worker, resolved func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once bool
	resolve := func() {
		if !once {
			once = true
			resolved()
		}
	}
	defer resolve()

	token := s.token
	if token == "" {
		var err error
		if token, err = s.sign(); err != nil {
			w.fail("sign a token: " + err.Error())
			return
		}
	}
	// The connect timeout cancels the request's context, which must otherwise live on for the
	// whole stream.
	timedOut := make(chan struct{})
	timer := time.AfterFunc(w.cfg.ConnectTimeout, func() { close(timedOut); cancel() })
	s.started = time.Now().UnixNano()
	w.markStart(s.started)
	header := http.Header{"Authorization": {"Bearer " + token}}
	st, resp, err := sseclient.Connect(ctx, w.client, s.url, header)
	if err == nil && st == nil {
		err = refusal(resp)
		resp.Body.Close()
	}
	if err == nil {
		defer st.Close()
		var ev sseclient.Event
		if ev, err = st.NextEvent(); err == nil && ev.Event != "connected" {
			err = fmt.Errorf("first event %q, not connected", ev.Event)
		}
	}
	if !timer.Stop() {
		<-timedOut
		err = errTimeout
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, errTimeout) {
			return // the run ended while connecting: neither success nor failure
		}
		w.fail(reason(err))
		return
	}
	s.established = time.Now().UnixNano()
	w.connected(s)
	resolve()

	for {
		ev, err := st.NextEvent()
		if err != nil {
			if ctx.Err() == nil {
				w.closed(reason(err))
			}
			return
		}
		switch ev.Event {
		case "message":
			p, err := parseMessage(ev.Data)
			if err != nil {
				continue // not ours: some other publisher on the same channel
			}
			w.received(&s.tally, p, time.Now().UnixNano())
		case "lagging", "disconnect", "auth_failed":
			w.notice(ev.Event)
		}
	}
}

// errTimeout is a session that did not get its connected event within -connect-timeout.
var errTimeout = errors.New("timeout")

// refusal turns a non-200 answer into an error naming its status and error code.
func refusal(resp *http.Response) error {
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	if body.Error.Code != "" {
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, body.Error.Code)
	}
	return fmt.Errorf("HTTP %d", resp.StatusCode)
}

// reason is a short, countable description of why a session failed or closed.
func reason(err error) string {
	switch {
	case errors.Is(err, errTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by server"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files (raise ulimit -n or use more -procs)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (more api addresses or a wider ip_local_port_range)"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		err = ne.Err
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return strings.TrimSpace(msg)
}
