package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"hash"
)

func hmacToken(alg, kid, secret string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	signing := b64(h) + "." + b64(c)
	var fn func() hash.Hash
	switch alg {
	case "HS384":
		fn = sha512.New384
	case "HS512":
		fn = sha512.New
	default:
		fn = sha256.New
	}
	m := hmac.New(fn, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + b64(m.Sum(nil))
}
