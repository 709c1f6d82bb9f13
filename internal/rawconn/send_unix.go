//go:build unix

package rawconn

import "syscall"

// SendAll sends b to the non-blocking socket fd with Send until all of it went, retrying an
// interrupted call. It returns how much went and, when not all did, why: EAGAIN when the socket
// took no more (it is full).
func SendAll(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := Send(fd, b[n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, syscall.EAGAIN
		}
		n += m
	}
	return n, nil
}
