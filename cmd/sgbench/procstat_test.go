package main

import (
	"os"
	"runtime"
	"testing"
)

func TestParseProcFiles(t *testing.T) {
	// A command name may hold spaces and parentheses: fields count from the last ')'.
	stat := "4242 (api (x) y) S 1 4242 4242 0 -1 4194560 2210 0 0 0 1234 567 0 0 20 0 12 0 1000 2000000 3000 18446744073709551615\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 18.01 {
		t.Errorf("parseStatCPU = %g, %v; want 18.01", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (api) S 1 2")); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
	status := "Name:\tapi\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nThreads:\t12\n"
	rss, err := parseStatusRSS([]byte(status))
	if err != nil || rss != 51234 {
		t.Errorf("parseStatusRSS = %d, %v; want 51234", rss, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseStatusRSS accepted a status without VmRSS")
	}
}

func TestReadOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.CPU < 0 {
		t.Errorf("own sample = %+v", s)
	}
	if _, err := sampleAll([]int{os.Getpid(), 1 << 30}); err == nil {
		t.Error("sampling a pid that cannot exist succeeded")
	}
}
