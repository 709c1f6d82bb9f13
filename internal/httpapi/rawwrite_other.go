//go:build unix && !linux

package httpapi

import "syscall"

// writeNonblock is write(2) on a non-blocking descriptor.
func writeNonblock(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
