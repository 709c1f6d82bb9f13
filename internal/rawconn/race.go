//go:build race

package rawconn

import "sync/atomic"

// ioSync gives the race detector what the syscall package gives it for reads and writes: a
// write happens before the reads that may get its bytes, so a test whose client and server
// share memory across a connection in one process is not reported as a race.
var ioSync atomic.Int64

func raceRelease() { ioSync.Add(1) }
func raceAcquire() { ioSync.Load() }
