package urlguard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd00:ec2::254", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"2002:7f00:1::", false},
	} {
		if got := Public(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Public(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := Guard{}
	for _, tc := range []struct {
		url       string
		forbidden bool // refused as an address, not as a malformed URL
	}{
		{"ftp://8.8.8.8/x", false},
		{"/relative", false},
		{"https://user:pw@8.8.8.8/", false},
		{"http://127.0.0.1/hook", true},
		{"http://[::1]:8080/hook", true},
		{"http://169.254.169.254/latest/meta-data", true},
		{"http://localhost/hook", true},
		{"http://api.localhost/hook", true},
		{"http://10.0.0.5/hook", true},
	} {
		_, err := g.Check(ctx, tc.url)
		if err == nil {
			t.Errorf("Check(%q) accepted it", tc.url)
			continue
		}
		if got := errors.Is(err, ErrForbidden); got != tc.forbidden {
			t.Errorf("Check(%q) = %v; forbidden address %v, want %v", tc.url, err, got, tc.forbidden)
		}
	}
	if _, err := g.Check(ctx, "https://8.8.8.8/hook"); err != nil {
		t.Errorf("a public address was refused: %v", err)
	}
	if _, err := (Guard{AllowPrivate: true}).Check(ctx, "http://127.0.0.1:9/hook"); err != nil {
		t.Errorf("AllowPrivate refused loopback: %v", err)
	}
}

// TestClientRefusesAtDial shows the check that matters against DNS rebinding: whatever the URL
// said when it was registered, the client refuses a connection to a private address.
func TestClientRefusesAtDial(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	_, err := Guard{}.Client(5 * time.Second).Do(req)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("dial to %s: err = %v, want ErrForbidden", srv.URL, err)
	}

	open := Guard{AllowPrivate: true}.Client(5 * time.Second)
	resp, err := open.Do(req)
	if err != nil {
		t.Fatalf("AllowPrivate client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
	rreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/redirect", nil)
	resp, err = open.Do(rreq)
	if err != nil {
		t.Fatalf("redirect: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("a redirect was followed: status %d, want 302", resp.StatusCode)
	}
}
