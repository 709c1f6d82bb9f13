//go:build !race

package rawconn

func raceRelease() {}
func raceAcquire() {}
