package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// --help prints every variable the worker reads and exits 0 without touching anything; an
// argument it does not know is a usage error.
func TestHelp(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	noEnv := func(string) string { return "" }
	if err := run(context.Background(), []string{"worker", "--help"}, noEnv, &out, &errOut); err != nil {
		t.Fatalf("--help: %v", err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	code := string(src[:bytes.Index(src, []byte("const usage"))]) + string(src[bytes.Index(src, []byte("func readConfig")):])
	for _, v := range regexp.MustCompile(`"(STREAMGATE_[A-Z_]+|REDIS_[A-Z_]+)"`).FindAllStringSubmatch(code, -1) {
		if !strings.Contains(out.String(), v[1]) {
			t.Errorf("--help does not list %s", v[1])
		}
	}
	err = run(context.Background(), []string{"worker", "--bogus"}, noEnv, &out, &errOut)
	var ce configError
	if !errors.As(err, &ce) {
		t.Fatalf("unknown argument: %v, want a usage error (exit 2)", err)
	}
}
