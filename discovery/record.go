package discovery

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/velo-messenger/velo/peer"
)

// Record is an instance's entry as key-value backends store it: its Info
// and the token of the registration that wrote it. The token lets a
// registration refresh or withdraw only its own entry, never a newer
// registration of the same instance (a restart under the same id).
type Record struct {
	peer.Info
	Token string `json:"token"`
}

// NewRecord returns the entry for info under a fresh random token, and its
// JSON form.
func NewRecord(info peer.Info) (Record, []byte, error) {
	var tok [12]byte
	rand.Read(tok[:])
	rec := Record{Info: info.Clone(), Token: hex.EncodeToString(tok[:])}
	b, err := json.Marshal(rec)
	return rec, b, err
}

// Encode returns the entry as a backend stores it.
func (r Record) Encode() ([]byte, error) { return json.Marshal(r) }

// DecodeRecord reads an entry written by NewRecord.
func DecodeRecord(b []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("discovery: bad entry: %w", err)
	}
	return rec, nil
}
