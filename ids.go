package streamgate

import (
	"crypto/rand"
	"fmt"
)

const idAlphabet = "0123456789abcdefghijklmnopqrstuv"

// NewID returns prefix followed by 16 random base32 characters (80 bits): tn_…, key_…, ses_….
func NewID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // no randomness: no id is safe to hand out
	}
	for i := range b {
		b[i] = idAlphabet[b[i]&31]
	}
	return prefix + string(b[:])
}
