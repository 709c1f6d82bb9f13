package httpapi

import (
	"fmt"
	"os"
	"syscall"
)

// poller is an epoll instance of the node's own. Its descriptor is non-blocking and sits in the
// runtime's netpoller (epoll instances nest), so the loop waiting on it parks like any network
// read and holds no thread while no client leaves.
type poller struct {
	fd   int // owned by file; used only while the watcher's lock says the poller is open
	file *os.File
	raw  syscall.RawConn
}

// clientGone are the events that say the client closed its side or the connection failed;
// EPOLLIN without them means it sent bytes, EPOLLOUT alone that the socket takes bytes again.
const clientGone = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR

func openPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll instance: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("make epoll instance non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(fd), "client-close-watcher")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll instance: %w", err)
	}
	return &poller{fd: fd, file: file, raw: raw}, nil
}

// watchEvents are what a registration asks for: its client leaving or sending, once
// (EPOLLONESHOT). The first such event is all a stream needs; a registration that reports its
// socket writable (EPOLLOUT, asked for by a waiting write) is armed again.
const watchEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers the socket fd under id.
func (p *poller) add(fd int, id uint64) error {
	return p.ctl(syscall.EPOLL_CTL_ADD, fd, id, false)
}

// arm re-arms fd's registration, asking for the socket being writable too when out is set
// (one event disarms a registration, whatever it reports).
func (p *poller) arm(fd int, id uint64, out bool) error {
	return p.ctl(syscall.EPOLL_CTL_MOD, fd, id, out)
}

func (p *poller) ctl(op, fd int, id uint64, out bool) error {
	ev := syscall.EpollEvent{Events: watchEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if out {
		ev.Events |= syscall.EPOLLOUT
	}
	return syscall.EpollCtl(p.fd, op, fd, &ev)
}

// remove takes fd out of the epoll instance; the caller makes sure fd is still the socket it
// registered. An error is of no consequence: the registration goes with the socket.
func (p *poller) remove(fd int) {
	_ = syscall.EpollCtl(p.fd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// wait hands every batch of events to handle until the poller is closed or fails; it returns
// the error that ended it.
func (p *poller) wait(handle func([]clientEvent)) error {
	events := make([]syscall.EpollEvent, 128)
	batch := make([]clientEvent, 0, len(events))
	for {
		var n int
		var waitErr error
		// A wait that times out at once, called whenever the netpoller says the epoll instance
		// is readable; returning false parks until it is again. Only an empty wait parks, so an
		// event that comes after it wakes the loop.
		err := p.raw.Read(func(fd uintptr) bool {
			for {
				n, waitErr = syscall.EpollWait(int(fd), events, 0)
				if waitErr != syscall.EINTR {
					return n > 0 || waitErr != nil
				}
			}
		})
		if err != nil {
			return fmt.Errorf("wait for epoll instance: %w", err)
		}
		if waitErr != nil {
			return fmt.Errorf("epoll_wait: %w", waitErr)
		}
		batch = batch[:0]
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			kind := clientLeft
			switch {
			case ev.Events&clientGone != 0:
			case ev.Events&syscall.EPOLLIN != 0:
				kind = clientSent
			case ev.Events&syscall.EPOLLOUT != 0:
				kind = socketWritable
			}
			batch = append(batch, clientEvent{id: id, kind: kind})
		}
		handle(batch)
	}
}

// close ends wait and releases the epoll instance with every registration in it.
func (p *poller) close() {
	p.file.Close()
}
