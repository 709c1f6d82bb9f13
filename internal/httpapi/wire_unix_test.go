//go:build unix

package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"testing"
	"time"
)

// A taken-over socket is written without blocking until its send buffer is full; what it does
// not take is kept and written, in order, by Flush once the client reads again: the client
// receives one valid chunked body with every batch, whole and in order.
func TestTryConnSinkKeepsWhatTheSocketDoesNotTake(t *testing.T) {
	t.Parallel()
	client, conn := tcpPair(t)
	_ = client.SetReadBuffer(4 << 10)
	_ = conn.SetWriteBuffer(4 << 10)
	testTryConnSink(t, client, conn)
}

// testTryConnSink fills conn, whose client reads nothing until the sink has kept some batches,
// then checks that the client receives every batch, whole and in order.
func testTryConnSink(t *testing.T, client, conn net.Conn) {
	const timeout = 50 * time.Millisecond
	out, ok := newConnSink(conn, nil, timeout).(*tryConnSink)
	if !ok {
		t.Fatal("a TCP connection's sink cannot be written without blocking")
	}

	var want bytes.Buffer
	batch := func(i int) [][]byte {
		p := [][]byte{[]byte(fmt.Sprintf("id: %d\nevent: message\ndata: ", i)), bytes.Repeat([]byte{'a' + byte(i%26)}, 900), []byte("\n\n")}
		for _, b := range p {
			want.Write(b)
		}
		return p
	}
	// The deadline a blocking write left does not stop a try: a stream idle for longer than the
	// timeout is still written without blocking.
	head := []byte("retry: 2000\n\n")
	want.Write(head)
	if err := out.WriteBatch([][]byte{head}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * timeout)
	// The client reads nothing: the socket's buffers fill.
	i, full := 0, false
	for ; i < 100000 && !full; i++ {
		done, err := out.TryWriteBatch(batch(i))
		if err != nil {
			t.Fatal(err)
		}
		full = !done
	}
	if !full {
		t.Fatal("the socket took 100,000 batches with nobody reading")
	}
	// Once it has kept something, the sink keeps the rest after it, small or large.
	for range 3 {
		if done, err := out.TryWriteBatch(batch(i)); done || err != nil {
			t.Fatalf("a batch after a kept one: done %v, err %v; want it kept", done, err)
		}
		i++
	}
	large := [][]byte{[]byte("data: "), bytes.Repeat([]byte("z"), 2*copyMax), []byte("\n\n")}
	for _, b := range large {
		want.Write(b)
	}
	if done, err := out.TryWriteBatch(large); done || err != nil {
		t.Fatalf("a large batch: done %v, err %v; want it kept", done, err)
	}

	got := make(chan []byte, 1)
	// The sink's timeout is short: write what was kept with a longer one.
	out.timeout = 30 * time.Second
	go func() {
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(httputil.NewChunkedReader(client))
		got <- b
	}()
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := out.WriteBatch([][]byte{[]byte("data: last\n\n")}); err != nil {
		t.Fatal(err)
	}
	want.WriteString("data: last\n\n")
	if _, err := conn.Write([]byte("0\r\n\r\n")); err != nil { // the body's end
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("the client read %d bytes, want %d: not every batch, in order", len(b), want.Len())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not read the body")
	}
}
