package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports (the kernel scales to it whatever its internal HZ).
const clockTicks = 100

// procSample is what sgbench reads of a server process at one moment.
type procSample struct {
	CPU    float64 `json:"cpu_seconds"` // user + system, since the process started
	RSSKiB int64   `json:"rss_kib"`
}

// readProc samples pid from /proc. It fails where there is no /proc (not Linux) or no such
// process.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	rss, err := parseStatusRSS(status)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return procSample{CPU: cpu, RSSKiB: rss}, nil
}

// parseStatCPU returns utime+stime in seconds from the text of /proc/<pid>/stat. The command
// name in parentheses may hold spaces and parentheses, so fields are counted after the last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields", len(f)+2)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime or stime")
	}
	return float64(utime+stime) / clockTicks, nil
}

// parseStatusRSS returns VmRSS in KiB from the text of /proc/<pid>/status.
func parseStatusRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) != 2 || string(f[1]) != "kB" {
				return 0, fmt.Errorf("odd VmRSS line %q", bytes.TrimSpace(line))
			}
			return strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS (a zombie or kernel thread?)")
}

// sampleAll samples every pid, keeping going past failures; a failed sample is zero and its
// error is returned with the pid.
func sampleAll(pids []int) ([]procSample, error) {
	out := make([]procSample, len(pids))
	var first error
	for k, pid := range pids {
		s, err := readProc(pid)
		if err != nil && first == nil {
			first = fmt.Errorf("sample pid %d: %w", pid, err)
		}
		out[k] = s
	}
	return out, first
}
