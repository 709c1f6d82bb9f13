//go:build unix

package rawconn

import (
	"io"
	"testing"
)

// BenchmarkConnWriteRead is one small write and its read on a loopback connection: on Linux
// two raw system calls and no allocation.
func BenchmarkConnWriteRead(b *testing.B) {
	server, client := pair(b)
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(server, buf); err != nil {
			b.Fatal(err)
		}
	}
}
