//go:build unix && !linux

package rawconn

import "syscall"

// Send is write(2) on a non-blocking descriptor.
func Send(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
