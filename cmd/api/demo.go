package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// runDemo gives a dev node something to show: a "Demo" tenant with a few open streams, a
// ticker channel and a job that keeps making progress. It talks to the node over its own HTTP
// API on loopback, like any client, and stops with ctx.
func runDemo(ctx context.Context, base string, log *slog.Logger) error {
	c := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path, key string, body any, out any) error {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, r)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		if out != nil {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		return nil
	}

	var signup struct {
		APIKey struct{ Secret string } `json:"api_key"`
	}
	if err := call("POST", "/v1/tenants", "", map[string]string{"name": "Demo"}, &signup); err != nil {
		return fmt.Errorf("demo signup: %w", err)
	}
	key := signup.APIKey.Secret
	var tok struct{ Token string }
	if err := call("POST", "/v1/tokens", key, map[string]any{"sub": "demo-viewer", "channels": []string{"*"}, "ttl_seconds": 86400}, &tok); err != nil {
		return fmt.Errorf("demo token: %w", err)
	}
	for _, chans := range []string{"channel=demo.ticker", "channel=demo.ticker&channel=job:demo-render-0", "channel=job:demo-render-0"} {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/stream?"+chans+"&token="+tok.Token, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body) // a reader as fast as any browser
		}()
	}
	log.Info("demo tenant running: a ticker on demo.ticker and jobs demo-render-<n>")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_ = call("POST", "/v1/channels/demo.ticker/events", key, map[string]any{"event": "tick", "data": map[string]int{"n": i}}, nil)
		progress := i % 101
		status := "running"
		if progress == 100 {
			status = "succeeded"
		}
		job := fmt.Sprintf("demo-render-%d", i/101)
		_ = call("PUT", "/v1/jobs/"+job, key, map[string]any{"status": status, "progress": progress}, nil)
	}
}
