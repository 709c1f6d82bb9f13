package tenant

import (
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
)

// BenchmarkVerifyToken is the cost of authenticating one stream request with a minted token,
// with the signing key and tenant in the node's cache (the steady state).
func BenchmarkVerifyToken(b *testing.B) {
	rdb := redistest.Start(b).Client()
	key := make([]byte, 32)
	s, err := NewStore(rdb, key, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	su, err := s.Create(b.Context(), "Bench")
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := s.MintToken(b.Context(), su.Tenant.ID, "user-42", []string{"chat.*", "job:*"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerifyToken(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
