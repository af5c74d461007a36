package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"

	"github.com/immense-p2p/immense/internal/durable"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// identityFile is the name of the private key file inside the data directory.
const identityFile = "identity.key"

// maxIdentityFile bounds the read: a marshalled Ed25519 key is 68 bytes.
const maxIdentityFile = 4 << 10

// loadOrCreateIdentity returns the Ed25519 key stored at path, creating it
// (mode 0600, written atomically) if there is none. The peer ID derives from
// this key, so keeping it is what lets a node keep its ID across restarts.
func loadOrCreateIdentity(path string) (crypto.PrivKey, bool, error) {
	b, err := durable.ReadPrivate(path, maxIdentityFile)
	switch {
	case err == nil:
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("identity %s is not a libp2p private key (%v): move it away to generate a new identity, or restore it from a backup", path, err)
		}
		if k.Type() != crypto.Ed25519 {
			return nil, false, fmt.Errorf("identity %s holds a %s key; Immense uses Ed25519", path, k.Type())
		}
		return k, false, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("read identity: %w", err)
	}

	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, false, fmt.Errorf("marshal identity: %w", err)
	}
	if err := durable.WriteFile(path, b, 0o600); err != nil {
		return nil, false, fmt.Errorf("write identity: %w", err)
	}
	return k, true, nil
}
