package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// sealer encrypts endpoint secrets at rest the way the tenant package encrypts signing keys:
// AES-256-GCM under STREAMGATE_SECRET_KEY, base64(nonce || ciphertext), with the tenant and
// endpoint ids as authenticated data, so that a ciphertext copied to another endpoint does not
// decrypt.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func additional(tenantID, webhookID string) []byte {
	return []byte("webhook/" + tenantID + "/" + webhookID)
}

func (s *sealer) seal(tenantID, webhookID string, plain []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, additional(tenantID, webhookID))), nil
}

func (s *sealer) open(tenantID, webhookID, enc string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(enc)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n {
		return nil, errors.New("malformed ciphertext")
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], additional(tenantID, webhookID))
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt (is STREAMGATE_SECRET_KEY the one it was made with?): %w", err)
	}
	return plain, nil
}

// secretPrefix starts every endpoint secret, as Standard Webhooks has it.
const secretPrefix = "whsec_"

// newSecret returns "whsec_" and the base64 of 32 random bytes.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}

// signingKey is the HMAC key of a secret: the bytes its base64 part encodes.
func signingKey(secret string) ([]byte, error) {
	if len(secret) <= len(secretPrefix) || secret[:len(secretPrefix)] != secretPrefix {
		return nil, errors.New("not a whsec_ secret")
	}
	return base64.StdEncoding.DecodeString(secret[len(secretPrefix):])
}
