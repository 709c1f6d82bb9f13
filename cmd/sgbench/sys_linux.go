package main

import (
	"os/exec"
	"syscall"
)

// raiseNoFile lifts RLIMIT_NOFILE to its hard limit (one socket per session needs one
// descriptor) and returns the limit now in force, 0 if unknown.
func raiseNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	return lim.Cur
}

// dieWithParent makes a worker process get SIGKILL should its coordinator die, so that no
// worker outlives a killed run holding thousands of sockets.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
