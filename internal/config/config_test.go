package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Env { return func(k string) string { return m[k] } }

func TestReaderReportsEveryProblemByName(t *testing.T) {
	t.Parallel()
	r := &Reader{Env: env(map[string]string{
		"N": "12", "BAD_N": "x", "LOW_N": "0",
		"D": "250ms", "BAD_D": "soon",
		"ONE": "closed", "BAD_ONE": "maybe",
		"KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "SHORT_KEY": "c2hvcnQ=",
	})}
	if got := r.Int("N", 1, 1, 100); got != 12 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("UNSET", 7, 1, 100); got != 7 {
		t.Errorf("default Int = %d", got)
	}
	r.Int("BAD_N", 1, 1, 100)
	r.Int("LOW_N", 1, 1, 100)
	if got := r.Duration("D", time.Second, 0, time.Minute); got != 250*time.Millisecond {
		t.Errorf("Duration = %s", got)
	}
	r.Duration("BAD_D", time.Second, 0, time.Minute)
	if got := r.OneOf("ONE", "open", "open", "closed"); got != "closed" {
		t.Errorf("OneOf = %q", got)
	}
	r.OneOf("BAD_ONE", "open", "open", "closed")
	if got := r.Key32("KEY"); len(got) != 32 {
		t.Errorf("Key32 gave %d bytes", len(got))
	}
	r.Key32("SHORT_KEY")
	err := r.Err()
	if err == nil {
		t.Fatal("no error for five bad variables")
	}
	for _, name := range []string{"BAD_N", "LOW_N", "BAD_D", "BAD_ONE", "SHORT_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestReadRedis(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		vars    map[string]string
		dev     bool
		cluster int
		wantErr bool
	}{
		"nothing is dev mode": {vars: map[string]string{}, dev: true},
		"a url":               {vars: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}},
		"the cluster wins":    {vars: map[string]string{"REDIS_URL": "redis://x:1", "REDIS_CLUSTER_ADDRS": "a:1, b:2,,c:3"}, cluster: 3},
		"a bad url":           {vars: map[string]string{"REDIS_URL": "http://nope"}, wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ReadRedis(env(tc.vars))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (r.DevMode() != tc.dev || len(r.ClusterAddrs) != tc.cluster) {
				t.Errorf("got %+v", r)
			}
		})
	}
}

// The nodes speak RESP2 unless REDIS_URL names a protocol.
func TestRedisProtocol(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]int{
		"redis://127.0.0.1:6379/0":            2,
		"redis://127.0.0.1:6379/0?protocol=3": 3,
		"redis://127.0.0.1:6379/0?protocol=2": 2,
	} {
		opt, err := Redis{URL: url}.Options()
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if opt.Protocol != want {
			t.Errorf("%s: protocol %d, want %d", url, opt.Protocol, want)
		}
	}
}

// Connections' buffers are sized for a node's small commands unless REDIS_URL sizes the
// pipeline pool's itself.
func TestRedisBuffers(t *testing.T) {
	t.Parallel()
	opt, err := Redis{URL: "redis://127.0.0.1:6379/0"}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if opt.ReadBufferSize != connBuffer || opt.WriteBufferSize != connBuffer ||
		opt.PipelineReadBufferSize != connBuffer || opt.PipelineWriteBufferSize != connBuffer {
		t.Errorf("buffers %d/%d, pipelines %d/%d; want %d each", opt.ReadBufferSize, opt.WriteBufferSize,
			opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize, connBuffer)
	}
	opt, err = Redis{URL: "redis://127.0.0.1:6379/0?pipeline_read_buffer_size=131072"}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if opt.PipelineReadBufferSize != 131072 {
		t.Errorf("pipeline read buffer %d, want REDIS_URL's 131072", opt.PipelineReadBufferSize)
	}
}
