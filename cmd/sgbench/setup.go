package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// tenantCreds is what the run needs of one tenant.
type tenantCreds struct {
	ID     string
	APIKey string
	Token  string
	Limits limits
	// Signing is the tenant's signing key when sgbench signed the tenant up (its secret is
	// shown only then): with it, every session gets a token of its own, signed here as a
	// tenant's backend would.
	Signing signingKey
}

// signingKey is a tenant's HS256 signing key.
type signingKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// limits are the tenant limits sgbench checks the run against.
type limits struct {
	MaxConnections             int `json:"max_connections"`
	MaxSubscriptionsPerSession int `json:"max_subscriptions_per_session"`
	PublishPerSecond           int `json:"publish_per_second"`
	MaxMessageBytes            int `json:"max_message_bytes"`
}

// restClient makes the few setup calls of a run.
type restClient struct {
	http *http.Client
}

func newRESTClient() *restClient {
	return &restClient{http: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}}
}

// do sends one JSON request and decodes a 2xx answer into out. A refusal comes back as an error
// with the status and the API's error code and message. A 429 is retried after its Retry-After
// (at most 5 times, each wait at most 10 s) since signup is rate-limited per client address.
func (c *restClient) do(ctx context.Context, method, url, bearer string, in, out any) error {
	for attempt := 0; ; attempt++ {
		var body io.Reader
		if in != nil {
			b, err := json.Marshal(in)
			if err != nil {
				return err
			}
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 5 {
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err := sleep(ctx, time.Duration(min(max(wait, 1), 10))*time.Second); err != nil {
				return err
			}
			continue
		}
		if resp.StatusCode/100 != 2 {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
				return fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
			}
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		return nil
	}
}

// waitReady checks that every base URL answers /readyz with 200, polling for up to wait.
func (c *restClient) waitReady(ctx context.Context, bases []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for _, base := range bases {
		for {
			err := c.do(ctx, http.MethodGet, base+"/readyz", "", nil, nil)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s/readyz: %w", base, err)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// setupTenants signs up cfg.Tenants tenants, or looks up those of cfg.APIKeys, on base, and
// mints each an end-user token for the run's channels, valid for ttl.
func (c *restClient) setupTenants(ctx context.Context, cfg config, base, prefix string, ttl time.Duration) ([]tenantCreds, error) {
	out := make([]tenantCreds, cfg.Tenants)
	for k := range out {
		t := &out[k]
		if cfg.Signup {
			su, err := c.signup(ctx, base, fmt.Sprintf("sgbench %s %d", prefix, k))
			if err != nil {
				return nil, fmt.Errorf("sign tenant %d up: %w", k, err)
			}
			*t = su
		} else {
			var tn struct {
				ID     string `json:"id"`
				Limits limits `json:"limits"`
			}
			t.APIKey = cfg.APIKeys[k]
			if err := c.do(ctx, http.MethodGet, base+"/v1/tenant", t.APIKey, nil, &tn); err != nil {
				return nil, fmt.Errorf("look up the tenant of API key %d: %w", k+1, err)
			}
			t.ID, t.Limits = tn.ID, tn.Limits
		}
		var tok struct {
			Token string `json:"token"`
		}
		req := map[string]any{"sub": "sgbench", "channels": []string{prefix + ".*"}, "ttl_seconds": int(ttl.Seconds())}
		if err := c.do(ctx, http.MethodPost, base+"/v1/tokens", t.APIKey, req, &tok); err != nil {
			return nil, fmt.Errorf("mint a token for tenant %s: %w", t.ID, err)
		}
		t.Token = tok.Token
	}
	return out, nil
}

// signup signs a tenant up on base: its id, limits, API key and signing key.
func (c *restClient) signup(ctx context.Context, base, name string) (tenantCreds, error) {
	var su struct {
		Tenant struct {
			ID     string `json:"id"`
			Limits limits `json:"limits"`
		} `json:"tenant"`
		APIKey struct {
			Secret string `json:"secret"`
		} `json:"api_key"`
		SigningKey signingKey `json:"signing_key"`
	}
	if err := c.do(ctx, http.MethodPost, base+"/v1/tenants", "", map[string]string{"name": name}, &su); err != nil {
		return tenantCreds{}, err
	}
	return tenantCreds{ID: su.Tenant.ID, APIKey: su.APIKey.Secret, Limits: su.Tenant.Limits, Signing: su.SigningKey}, nil
}

// tokenTTL is long enough for the whole run and its wind-down, within the API's 1 s – 24 h.
func tokenTTL(d time.Duration) time.Duration {
	return min(max(d+5*time.Minute, time.Minute), 24*time.Hour)
}

// limitWarnings compares the run with the tenants' limits and says what to raise.
func limitWarnings(cfg config, tenants []tenantCreds) []string {
	var w []string
	// max_connections counts a tenant's sessions across the cluster.
	perTenant := (cfg.Conns + cfg.Tenants - 1) / cfg.Tenants
	perTenantRate := cfg.Rate / float64(cfg.Tenants)
	for _, t := range tenants {
		if l := t.Limits.MaxConnections; l > 0 && perTenant > l {
			w = append(w, fmt.Sprintf("tenant %s allows %d connections and this run opens up to %d: expect 403 limit_exceeded (raise max_connections)", t.ID, l, perTenant))
		}
		if l := t.Limits.PublishPerSecond; cfg.Events > 0 && l > 0 && perTenantRate > float64(l) {
			w = append(w, fmt.Sprintf("tenant %s allows %d publishes/s and this run sends %.0f/s: expect 429 (raise publish_per_second)", t.ID, l, perTenantRate))
		}
		if l := t.Limits.MaxMessageBytes; cfg.Events > 0 && l > 0 && cfg.Payload > l {
			w = append(w, fmt.Sprintf("tenant %s allows %d-byte messages and -payload is %d: expect 413", t.ID, l, cfg.Payload))
		}
	}
	return w
}

// sleep waits for d or until ctx ends, returning ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signToken signs an end-user token with a tenant's signing key, as the tenant's backend does
// (HS256, kid in the header). It is written out by hand: sgbench signs a token per session as
// it dials, on the cores the api is measured on, and jwt's maps of claims cost more than the
// api's check of the token.
func signToken(key signingKey, sub string, channels []string, ttl time.Duration) (string, error) {
	now := time.Now()
	header, err := json.Marshal(tokenHeader{Alg: "HS256", Kid: key.ID, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(tokenClaims{Sub: sub, Channels: channels, Iat: now.Unix(), Exp: now.Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	tok := enc.AppendEncode(make([]byte, 0, 64+2*(len(header)+len(claims))), header)
	tok = append(tok, '.')
	tok = enc.AppendEncode(tok, claims)
	mac := hmac.New(sha256.New, []byte(key.Secret))
	mac.Write(tok)
	tok = append(tok, '.')
	return string(enc.AppendEncode(tok, mac.Sum(nil))), nil
}

type tokenHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type tokenClaims struct {
	Sub      string   `json:"sub"`
	Channels []string `json:"channels"`
	Iat      int64    `json:"iat"`
	Exp      int64    `json:"exp"`
}
