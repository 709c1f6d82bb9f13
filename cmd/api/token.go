package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/tenant"
)

const defaultURL = "http://localhost:8080"

// cliClient bounds every request the command line makes.
var cliClient = &http.Client{Timeout: 15 * time.Second}

// runToken mints or checks end-user tokens, for tenants debugging their integration.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const about = "Mints and checks end-user tokens.\n\n" +
		"  api token mint [flags]        mint a token (api token mint -h)\n" +
		"  api token check [flags] JWT   decode a token, and verify it when asked (api token check -h)"
	if len(args) == 0 {
		return usageError{"token: say mint or check (api token -h)"}
	}
	switch args[0] {
	case "mint":
		return runTokenMint(ctx, args[1:], stdout, stderr)
	case "check":
		return runTokenCheck(ctx, args[1:], stdout)
	default:
		if strings.HasPrefix(args[0], "-") {
			fs := newFlagSet("token", "api token (mint|check) …", about, stdout)
			if done, err := parse(fs, args, 0); done || err != nil {
				return err
			}
		}
		return usageError{fmt.Sprintf("token: unknown command %q (api token -h)", args[0])}
	}
}

// channelList is a repeatable --channel flag. Channel names may hold commas, so one flag is one
// pattern.
type channelList []string

func (l *channelList) String() string     { return strings.Join(*l, " ") }
func (l *channelList) Set(v string) error { *l = append(*l, v); return nil }

func runTokenMint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token mint", "api token mint --sub USER --channel PATTERN… (--tenant-key sgk_… | --kid sig_… --secret S)",
		"Mints an end-user token and prints it on stdout (its expiry goes to stderr). With --tenant-key\n"+
			"the server mints it (POST /v1/tokens at --url); with --kid and --secret it is signed here,\n"+
			"with a signing key of the tenant (HS256), and nothing is sent anywhere.", stdout)
	var channels channelList
	tenantKey := fs.String("tenant-key", "", "the tenant's API `key` (sgk_…): the server at --url mints the token")
	kid := fs.String("kid", "", "a signing key's `id` (sig_…): sign here, with --secret")
	secret := fs.String("secret", "", "that signing key's `secret`, exactly as the api returned it")
	sub := fs.String("sub", "", "the end `user` the token is for (1 to 256 characters)")
	fs.Var(&channels, "channel", "a channel `pattern` the token grants (chat.*, job:*); repeat for more")
	ttl := fs.Duration("ttl", time.Hour, "how long the token lasts, 1s to 24h, in whole seconds")
	base := fs.String("url", defaultURL, "the api's base `URL`, for --tenant-key")
	if done, err := parse(fs, args, 0); done || err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return usageError{"token mint: " + fmt.Sprintf(format, a...) + " (api token mint -h)"}
	}
	local := *kid != "" || *secret != ""
	switch {
	case *sub == "" || utf8.RuneCountInString(*sub) > 256:
		return bad("--sub must be 1 to 256 characters")
	case *ttl < tenant.MinTokenTTL || *ttl > tenant.MaxTokenTTL || *ttl%time.Second != 0:
		return bad("--ttl must be whole seconds from 1s to 24h, got %s", *ttl)
	case local && *tenantKey != "":
		return bad("give either --tenant-key or --kid and --secret, not both")
	case local && (*kid == "" || *secret == ""):
		return bad("--kid and --secret go together")
	case !local && *tenantKey == "":
		return bad("give --tenant-key, or --kid and --secret")
	}
	for _, p := range channels {
		if !streamgate.ValidPattern(p) {
			return bad("--channel %q is not a channel pattern: 1 to 200 characters of A-Z a-z 0-9 _ - . : @ = , and *", p)
		}
	}
	var (
		tok string
		exp time.Time
		err error
	)
	if local {
		tok, exp, err = signToken(*kid, *secret, *sub, channels, *ttl, time.Now())
	} else {
		tok, exp, err = mintOnServer(ctx, *base, *tenantKey, *sub, channels, *ttl)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "expires at %s\n", exp.UTC().Format(time.RFC3339))
	return nil
}

// signToken makes the token POST /v1/tokens would, with the given signing key.
func signToken(kid, secret, sub string, channels []string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	exp := now.Add(ttl).Truncate(time.Second)
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": exp.Unix()}
	if len(channels) > 0 {
		claims["channels"] = []string(channels)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = kid
	s, err := t.SignedString([]byte(secret))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign: %w", err)
	}
	return s, exp, nil
}

func mintOnServer(ctx context.Context, base, apiKey, sub string, channels []string, ttl time.Duration) (string, time.Time, error) {
	body := map[string]any{"sub": sub, "ttl_seconds": int(ttl / time.Second)}
	if len(channels) > 0 {
		body["channels"] = []string(channels)
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	status, raw, err := callAPI(ctx, http.MethodPost, base, "/v1/tokens", apiKey, body)
	if err != nil {
		return "", time.Time{}, err
	}
	if status != http.StatusCreated {
		return "", time.Time{}, fmt.Errorf("POST /v1/tokens: %s", describeRefusal(status, raw))
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Token == "" {
		return "", time.Time{}, fmt.Errorf("POST /v1/tokens: unexpected answer %q", truncateText(string(raw), 200))
	}
	return out.Token, out.ExpiresAt, nil
}

func runTokenCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("token check", "api token check [--secret S | --url URL] JWT",
		"Decodes an end-user token and prints its header and claims. It verifies nothing unless asked:\n"+
			"--secret checks the HS256 signature and the expiry here, with a signing key's secret;\n"+
			"--url asks that api whether it accepts the token (signature, key, expiry, tenant), with a\n"+
			"sessions-API request for a session that does not exist, which changes nothing.\n"+
			"Exits 1 when a verification refuses the token.", stdout)
	secret := fs.String("secret", "", "a signing key's `secret`: verify the signature here")
	base := fs.String("url", "", "an api's base `URL` (http://localhost:8080): ask it whether it accepts the token")
	pos, done, err := parseArgs(fs, args, 1)
	if done || err != nil {
		return err
	}
	raw := strings.TrimSpace(pos[0])
	header, claims, err := decodeJWT(raw)
	if err != nil {
		return usageError{"token check: " + err.Error()}
	}
	fmt.Fprintf(stdout, "header  %s\nclaims  %s\n", header, claims)
	var c struct {
		Sub      string          `json:"sub"`
		Channels json.RawMessage `json:"channels"`
		Exp      *float64        `json:"exp"`
		Iat      *float64        `json:"iat"`
	}
	_ = json.Unmarshal(claims, &c)
	now := time.Now()
	if c.Sub != "" {
		fmt.Fprintf(stdout, "sub       %s\n", c.Sub)
	}
	if len(c.Channels) > 0 {
		fmt.Fprintf(stdout, "channels  %s\n", c.Channels)
	}
	if c.Iat != nil {
		fmt.Fprintf(stdout, "issued    %s\n", unixTime(*c.Iat).Format(time.RFC3339))
	}
	switch {
	case c.Exp == nil:
		fmt.Fprintln(stdout, "expires   never: no exp claim (Streamgate refuses such a token)")
	case unixTime(*c.Exp).After(now):
		fmt.Fprintf(stdout, "expires   %s (in %s)\n", unixTime(*c.Exp).Format(time.RFC3339), unixTime(*c.Exp).Sub(now).Round(time.Second))
	default:
		fmt.Fprintf(stdout, "expires   %s (EXPIRED %s ago)\n", unixTime(*c.Exp).Format(time.RFC3339), now.Sub(unixTime(*c.Exp)).Round(time.Second))
	}

	var refused []string
	if *secret != "" {
		if err := verifyLocally(raw, *secret); err != nil {
			fmt.Fprintf(stdout, "secret    REFUSED: %v\n", err)
			refused = append(refused, "the secret")
		} else {
			fmt.Fprintln(stdout, "secret    verified: the HS256 signature is the secret's and the token is in date")
		}
	}
	if *base != "" {
		ok, why, err := verifyOnServer(ctx, *base, raw)
		switch {
		case err != nil:
			return err
		case ok:
			fmt.Fprintf(stdout, "server    accepted by %s\n", *base)
		default:
			fmt.Fprintf(stdout, "server    REFUSED by %s: %s\n", *base, why)
			refused = append(refused, *base)
		}
	}
	if *secret == "" && *base == "" {
		fmt.Fprintln(stdout, "verified  no: decoded only (--secret checks the signature here, --url asks a server)")
	}
	if len(refused) > 0 {
		return fmt.Errorf("token refused by %s", strings.Join(refused, " and "))
	}
	return nil
}

// decodeJWT returns a compact JWS's header and claims as indented JSON, without verifying it.
func decodeJWT(raw string) (header, claims []byte, err error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("not a JWT: it has %d dot-separated parts, not 3", len(parts))
	}
	out := make([][]byte, 2)
	for i, name := range []string{"header", "claims"} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return nil, nil, fmt.Errorf("not a JWT: its %s is not base64url", name)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "        ", "  "); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
			return nil, nil, fmt.Errorf("not a JWT: its %s is not a JSON object", name)
		}
		out[i] = buf.Bytes()
	}
	return out[0], out[1], nil
}

// verifyLocally checks the token as the api checks a signing key's token: HS256 only, exp
// required, the contract's leeway.
func verifyLocally(raw, secret string) error {
	_, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(tenant.TokenLeeway))
	return err
}

// verifyOnServer asks the api at base whether it accepts the token. There is no route for that
// alone; the sessions API authenticates the token before it looks the session up, so removing a
// subscription from a session that cannot exist answers 401 for a refused token and 404 for an
// accepted one, and changes nothing.
func verifyOnServer(ctx context.Context, base, token string) (ok bool, why string, err error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	path := "/v1/sessions/ses_tokencheck_" + hex.EncodeToString(b) + "/subscriptions/token-check"
	status, raw, err := callAPI(ctx, http.MethodDelete, base, path, token, nil)
	if err != nil {
		return false, "", err
	}
	switch status {
	case http.StatusNotFound:
		return true, "", nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, describeRefusal(status, raw), nil
	default:
		return false, "", fmt.Errorf("%s: unexpected answer: %s", base, describeRefusal(status, raw))
	}
}

// callAPI sends one JSON request to the api at base with a bearer credential.
func callAPI(ctx context.Context, method, base, path, bearer string, body any) (int, []byte, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, nil, usageError{fmt.Sprintf("--url must be an http:// or https:// base URL, got %q", base)}
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, cliClient.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := cliClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return resp.StatusCode, raw, nil
}

// describeRefusal renders an error answer of the contract as "401 unauthorized: message".
func describeRefusal(status int, raw []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		return fmt.Sprintf("%d %s: %s", status, e.Error.Code, e.Error.Message)
	}
	return fmt.Sprintf("%d %s", status, truncateText(strings.TrimSpace(string(raw)), 200))
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func unixTime(f float64) time.Time { return time.Unix(int64(f), 0).UTC() }
