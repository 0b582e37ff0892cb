package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/file"
)

// Two instances that share a registry file call each other with no
// RegisterPeer: the first send to an unknown id reads the file.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "velo-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "peers.json")

	start := func() *velo.Messenger {
		reg, err := file.New(path, file.Options{})
		if err != nil {
			panic(err)
		}
		m, err := velo.NewBuilder().Discovery(reg).Build(ctx)
		if err != nil {
			panic(err)
		}
		return m
	}
	a, b := start(), start()
	defer a.Shutdown(ctx)
	defer b.Shutdown(ctx)
	b.RegisterHandler(velo.UnaryHandler("greet", func(_ context.Context, c *velo.Context) ([]byte, error) {
		return append([]byte("hello, "), c.Payload...), nil
	}).Build())

	reply, err := a.Unary("greet").RawPayload([]byte("a")).Instance(b.InstanceID()).Send(ctx)
	fmt.Println(string(reply), err)
	// Output: hello, a <nil>
}
