//go:build !linux

package main

import "os/exec"

// raiseNoFile is a no-op outside Linux: the limit is unknown (0).
func raiseNoFile() uint64 { return 0 }

// dieWithParent has no portable equivalent; workers still exit when their stdin closes.
func dieWithParent(*exec.Cmd) {}
