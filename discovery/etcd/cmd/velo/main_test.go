package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/discovery/etcd/internal/etcdtest"
	"go.uber.org/zap"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/etcd"
	"github.com/velo-messenger/velo/transport/tcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestInstancesAndCallsThroughEtcd builds the command and runs it against
// two instances that an embedded etcd lists, under a prefix of their own.
func TestInstancesAndCallsThroughEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	bin := filepath.Join(t.TempDir(), "velo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	client := etcdtest.Start(t).ClientURL

	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ids []string
	for i := range 2 {
		r, err := etcd.New(c, etcd.Options{Prefix: "/shop/"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{})).Discovery(r).Service("shop").
			Handle(velo.UnaryHandler("who", func(context.Context, *velo.Context) ([]byte, error) {
				return fmt.Appendf(nil, "instance %d", i), nil
			}).Build()).
			Build(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.Shutdown(ctx)
		}()
		ids = append(ids, m.InstanceID().String())
	}

	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	disc := "etcd://" + client.Host + "/shop"
	out, errOut, err := run("instances", "--discovery", disc)
	if err != nil || !strings.Contains(out, "2 instance(s)") || !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) {
		t.Fatalf("instances: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = run("call", "--discovery", disc, ids[1], "who")
	if err != nil || out != "instance 1\n" {
		t.Fatalf("call by id: %v, %q, %s", err, out, errOut)
	}
	// Another prefix lists nothing.
	out, _, err = run("instances", "--discovery", "etcd://"+client.Host+"/other")
	if err != nil || !strings.Contains(out, "0 instance(s)") {
		t.Fatalf("another prefix: %v, %s", err, out)
	}
}
