package redistest

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// LossyProxy forwards connections to addr, except that it swallows the answer to the first
// request carrying marker and closes that connection: to the client, the command's answer was
// lost after Redis ran it. It returns the proxy's address; the proxy stops when the test ends.
func LossyProxy(tb testing.TB, addr, marker string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	var fired atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			var drop atomic.Bool
			go func() {
				defer s.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if strings.Contains(string(buf[:n]), marker) && fired.CompareAndSwap(false, true) {
							drop.Store(true)
						}
						if _, err := s.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && drop.Load() {
						return // the answer is lost, and with it the connection
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
