package peer

import (
	"errors"
	"strings"
	"testing"
)

func TestIDRoundTrip(t *testing.T) {
	id := NewID()
	if id.IsZero() {
		t.Fatal("NewID returned the zero ID")
	}
	if NewID() == id {
		t.Fatal("two NewID calls returned the same ID")
	}
	got, err := Parse(id.String())
	if err != nil || got != id {
		t.Fatalf("Parse(String()) = %v, %v; want %v", got, err, id)
	}
	var u ID
	if err := u.UnmarshalText([]byte("0123456789ABCDEF0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	dashed := "01234567-89ab-cdef-0123-456789abcdef"
	if d, err := Parse(dashed); err != nil || d != u {
		t.Fatalf("Parse(%q) = %v, %v; want %v", dashed, d, err, u)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "abc", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef00"} {
		if _, err := Parse(s); !errors.Is(err, ErrBadID) {
			t.Errorf("Parse(%q) error = %v; want ErrBadID", s, err)
		}
	}
}

func TestInfo(t *testing.T) {
	i := Info{ID: NewID(), Addresses: map[string]string{"tcp": "127.0.0.1:1", "uds": "/tmp/x"}}
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	c := i.Clone()
	c.Addresses["tcp"] = "changed"
	if a, _ := i.Address("tcp"); a != "127.0.0.1:1" {
		t.Fatalf("Clone shares its map: %q", a)
	}
	if err := (Info{}).Validate(); err == nil {
		t.Fatal("zero Info validated")
	}
	if err := (Info{ID: NewID()}).Validate(); err == nil {
		t.Fatal("Info without addresses validated")
	}
}

func TestInfoServiceAndHandlers(t *testing.T) {
	i := Info{ID: NewID(), Addresses: map[string]string{"tcp": "127.0.0.1:1"}, Service: "jobs", Handlers: []string{"a", "c"}}
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	if !i.Offers("a") || !i.Offers("c") || i.Offers("b") {
		t.Errorf("Offers: got a=%v b=%v c=%v, want true false true", i.Offers("a"), i.Offers("b"), i.Offers("c"))
	}
	c := i.Clone()
	if !c.Equal(i) {
		t.Fatalf("Clone %v differs from %v", c, i)
	}
	c.Handlers[0] = "z"
	if i.Handlers[0] != "a" {
		t.Error("Clone shares its handler list")
	}
	for name, o := range map[string]Info{
		"service":  {ID: i.ID, Addresses: i.Addresses, Service: "other", Handlers: i.Handlers},
		"handlers": {ID: i.ID, Addresses: i.Addresses, Service: i.Service, Handlers: []string{"a"}},
	} {
		if o.Equal(i) {
			t.Errorf("another %s compares Equal", name)
		}
	}
	bad := i.Clone()
	bad.Handlers = []string{"c", "a"}
	if bad.Validate() == nil {
		t.Error("Validate accepts unsorted handlers")
	}
	bad = i.Clone()
	bad.Service = string(make([]byte, MaxServiceName+1))
	if bad.Validate() == nil {
		t.Error("Validate accepts an overlong service name")
	}
	if s := i.String(); !strings.Contains(s, "@jobs{") {
		t.Errorf("String() = %q, want the service after the id", s)
	}
}
