// Package urlguard keeps the server's outbound HTTP calls (webhook deliveries, JWKS fetches) to
// public addresses: it checks a URL when a tenant hands it over, and its client checks every
// address again after DNS, at connect time, so that a name that later resolves to a private
// address (DNS rebinding) is refused too. Redirects are never followed.
package urlguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden means a URL or an address it resolves to is not one the server may call.
var ErrForbidden = errors.New("address not allowed")

// MaxURLLen bounds the URLs tenants may register.
const MaxURLLen = 2048

// Guard decides which addresses outbound calls may reach.
type Guard struct {
	// AllowPrivate lets calls reach loopback, private and link-local addresses (tests, private
	// networks: STREAMGATE_ALLOW_PRIVATE_URLS).
	AllowPrivate bool
	// Resolver looks names up; nil uses net.DefaultResolver.
	Resolver *net.Resolver
}

// Check parses raw and refuses anything but an absolute http or https URL without user
// information whose host resolves only to allowed addresses. Errors wrap ErrForbidden (a
// refused address) or describe the malformed URL; both are the caller's to fix.
func (g Guard) Check(ctx context.Context, raw string) (*url.URL, error) {
	if len(raw) > MaxURLLen {
		return nil, fmt.Errorf("the URL is longer than %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("the URL must be absolute: http(s)://host/path")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("the URL must start with https:// or http://")
	}
	if u.User != nil {
		return nil, errors.New("the URL must not carry a user name or password")
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("the URL has no host")
	}
	if g.AllowPrivate {
		return u, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !Public(ip) {
			return nil, fmt.Errorf("%s is not a public address: %w", host, ErrForbidden)
		}
		return u, nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return nil, fmt.Errorf("%s is a loopback name: %w", host, ErrForbidden)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := g.resolver().LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("the host %s cannot be resolved", host)
	}
	for _, a := range addrs {
		if !Public(a) {
			return nil, fmt.Errorf("%s resolves to %s, not a public address: %w", host, a.Unmap(), ErrForbidden)
		}
	}
	return u, nil
}

func (g Guard) resolver() *net.Resolver {
	if g.Resolver != nil {
		return g.Resolver
	}
	return net.DefaultResolver
}

// Client returns an HTTP client whose connections reach only allowed addresses, checked after
// DNS on every dial; that never follows redirects (a 3xx is the answer) and ignores proxy
// settings from the environment. timeout bounds each whole request.
func (g Guard) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), Resolver: g.Resolver}
	if !g.AllowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dial %s: %w", address, ErrForbidden)
			}
			if !Public(ap.Addr()) {
				return fmt.Errorf("dial %s: not a public address: %w", ap.Addr().Unmap(), ErrForbidden)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// blocked are the ranges no outbound call may reach unless private addresses are allowed:
// besides what netip classifies (loopback, private, link-local, multicast, unspecified),
// shared address space, benchmarking, documentation and reserved ranges, and the IPv6
// prefixes that embed an IPv4 address or reach a cloud's metadata service.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16",
		"fd00:ec2::254/128",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Public reports whether ip is an address outbound calls may reach: not loopback, private,
// link-local (which holds 169.254.169.254, the metadata address of most clouds), multicast,
// unspecified, or one of the reserved ranges above. IPv4-mapped IPv6 addresses are judged as
// the IPv4 address they carry.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
