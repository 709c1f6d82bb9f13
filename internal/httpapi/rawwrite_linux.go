package httpapi

import (
	"syscall"
	"unsafe"
)

// writeNonblock is write(2) on a non-blocking descriptor, made without telling the scheduler
// (RawSyscall): it cannot block, so the goroutine keeps its P. A flusher makes one such call
// per delivery; through syscall.Write each also entered and left the scheduler's syscall
// state, and a P seen in a system call across two of sysmon's ticks (a write slowed by the
// receive path loopback runs in it, or by stolen CPU) is handed to another thread, which
// keeps sysmon polling every 20 µs. Scenario B: 10.3 → 9.6 µs of api CPU per delivery.
func writeNonblock(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
