package erasure

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/immense-p2p/immense/internal/durable"
)

// AppKeyFileVersion is the only app key file format version this package
// reads and writes.
const AppKeyFileVersion = 1

// appKeyFileType tags the JSON document so that a key file cannot be
// mistaken for some other JSON file handed to --app-key by accident.
const appKeyFileType = "immense-app-key"

// maxAppKeyFile caps what LoadAppKey reads: a valid file is ~200 bytes.
const maxAppKeyFile = 4 << 10

// NamespaceID names an application namespace: SHA-256 of the namespace's
// Ed25519 public signing key. Anyone can check that a manifest was written by
// the namespace owner by hashing the public key the manifest carries.
type NamespaceID [32]byte

// String returns the lowercase hex form used in DHT keys.
func (n NamespaceID) String() string { return hex.EncodeToString(n[:]) }

// NamespaceOf returns the namespace id owned by pub.
func NamespaceOf(pub ed25519.PublicKey) NamespaceID { return sha256.Sum256(pub) }

// ObjectID names an object inside a namespace: a keyed hash (HMAC-SHA256
// under a subkey of the app secret) of the object key. It is keyed so that
// DHT servers and shard holders, who see object ids, cannot confirm guesses
// of the application's key names.
type ObjectID [32]byte

// String returns the lowercase hex form used in DHT keys.
func (o ObjectID) String() string { return hex.EncodeToString(o[:]) }

// AppKey is an application's key: an Ed25519 key pair that signs the
// namespace's manifests (and delete requests), and a 32-byte secret from
// which the per-object encryption keys and object ids are derived. Peers
// that hold it can read and write the namespace; peers without it can store
// shards but neither read nor forge them.
type AppKey struct {
	priv   ed25519.PrivateKey
	secret [32]byte
	// Derived once: the HMAC keys for object ids and placement seeds, and
	// the namespace id.
	idKey    [32]byte
	placeKey [32]byte
	ns       NamespaceID
}

// GenerateAppKey makes a fresh app key from crypto/rand.
func GenerateAppKey() (*AppKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	var secret [32]byte
	if _, err := io.ReadFull(rand.Reader, secret[:]); err != nil {
		return nil, fmt.Errorf("generate secret: %w", err)
	}
	return newAppKey(priv.Seed(), secret), nil
}

func newAppKey(seed []byte, secret [32]byte) *AppKey {
	k := &AppKey{priv: ed25519.NewKeyFromSeed(seed), secret: secret}
	k.ns = NamespaceOf(k.PublicKey())
	derive(secret[:], k.ns[:], "immense-state v1 object-id", k.idKey[:])
	derive(secret[:], k.ns[:], "immense-state v1 placement", k.placeKey[:])
	return k
}

// derive fills out with HKDF-SHA256(secret, salt, info).
func derive(secret, salt []byte, info string, out []byte) {
	k, err := hkdf.Key(sha256.New, secret, salt, info, len(out))
	if err != nil {
		// HKDF-SHA256 can produce 8160 bytes; we never ask for more than 32.
		panic("erasure: hkdf: " + err.Error())
	}
	copy(out, k)
}

// PublicKey returns the namespace's public signing key.
func (k *AppKey) PublicKey() ed25519.PublicKey {
	return k.priv.Public().(ed25519.PublicKey)
}

// TopicKey returns the app's topic key, which signs browser tokens
// (webrtc.MintEdDSA) and the certificates of app peers that publish to the
// app's topics (overlay publish authorization): an Ed25519 key derived
// from the namespace signing key with HKDF-SHA256 (info "immense-topics v1
// signing key"). Derived, so that the app key file stays the one secret an
// app keeps; separate, so that no signature made for topics, where tokens
// travel to every peer of a topic, can ever pass for a manifest or delete
// signature, or the reverse. Its public half is what volunteers are given
// (peer keygen writes it to app.key.pub).
func (k *AppKey) TopicKey() ed25519.PrivateKey {
	var seed [ed25519.SeedSize]byte
	derive(k.priv.Seed(), k.ns[:], "immense-topics v1 signing key", seed[:])
	return ed25519.NewKeyFromSeed(seed[:])
}

// Namespace returns the id of the namespace this key owns.
func (k *AppKey) Namespace() NamespaceID { return k.ns }

// Sign signs msg with the namespace's signing key.
func (k *AppKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// ObjectID returns the id of the object stored under key in this namespace.
func (k *AppKey) ObjectID(key string) ObjectID {
	m := hmac.New(sha256.New, k.idKey[:])
	m.Write([]byte(key))
	var id ObjectID
	m.Sum(id[:0])
	return id
}

// PlacementSeed returns the seed of obj's shard targets: HMAC-SHA256 of
// the object id under a key derived from the app's secret. Object ids are
// public; their seeds are known only to the app's peers, which place and
// repair its objects, so strangers cannot tell which peer ids would win an
// object's shards.
func (k *AppKey) PlacementSeed(obj ObjectID) PlacementSeed {
	m := hmac.New(sha256.New, k.placeKey[:])
	m.Write(obj[:])
	var s PlacementSeed
	m.Sum(s[:0])
	return s
}

// objectSecret derives the encryption key of one object. Binding the
// namespace and the full object key means one object's key reveals nothing
// about another's, and a value can only be decrypted under the key it was
// written under.
func (k *AppKey) objectSecret(key string) [32]byte {
	info := make([]byte, 0, 32+8+len(key))
	info = append(info, "immense-state v1 object-key"...)
	info = binary.BigEndian.AppendUint64(info, uint64(len(key)))
	info = append(info, key...)
	var out [32]byte
	derive(k.secret[:], k.ns[:], string(info), out[:])
	return out
}

// Equal reports whether two app keys are the same key.
func (k *AppKey) Equal(o *AppKey) bool {
	return o != nil && k.priv.Equal(o.priv) && hmac.Equal(k.secret[:], o.secret[:])
}

// appKeyFile is the on-disk form of an AppKey: a small JSON document,
//
//	{"type":"immense-app-key","version":1,
//	 "signing_key":"<base64 std, 32-byte Ed25519 seed>",
//	 "secret":"<base64 std, 32 bytes>",
//	 "namespace":"<hex namespace id, informative, checked on load>"}
type appKeyFile struct {
	Type       string `json:"type"`
	Version    int    `json:"version"`
	SigningKey string `json:"signing_key"`
	Secret     string `json:"secret"`
	Namespace  string `json:"namespace"`
}

// Marshal encodes k in the app key file format (see appKeyFile).
func (k *AppKey) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(appKeyFile{
		Type:       appKeyFileType,
		Version:    AppKeyFileVersion,
		SigningKey: base64.StdEncoding.EncodeToString(k.priv.Seed()),
		Secret:     base64.StdEncoding.EncodeToString(k.secret[:]),
		Namespace:  k.ns.String(),
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseAppKey decodes an app key file. Unknown fields, a wrong type or
// version, keys of the wrong length and a namespace that does not match the
// signing key are all rejected with ErrInvalidAppKey.
func ParseAppKey(data []byte) (*AppKey, error) {
	if len(data) > maxAppKeyFile {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrInvalidAppKey, maxAppKeyFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f appKeyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidAppKey, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidAppKey)
	}
	if f.Type != appKeyFileType {
		return nil, fmt.Errorf("%w: type %q, want %q", ErrInvalidAppKey, f.Type, appKeyFileType)
	}
	if f.Version != AppKeyFileVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInvalidAppKey, f.Version)
	}
	seed, err := base64.StdEncoding.DecodeString(f.SigningKey)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: signing_key must be %d bytes of base64", ErrInvalidAppKey, ed25519.SeedSize)
	}
	sec, err := base64.StdEncoding.DecodeString(f.Secret)
	if err != nil || len(sec) != 32 {
		return nil, fmt.Errorf("%w: secret must be 32 bytes of base64", ErrInvalidAppKey)
	}
	k := newAppKey(seed, [32]byte(sec))
	if f.Namespace != "" && f.Namespace != k.ns.String() {
		return nil, fmt.Errorf("%w: namespace %s does not match the signing key (%s)", ErrInvalidAppKey, f.Namespace, k.ns)
	}
	return k, nil
}

// LoadAppKey reads and parses the app key file at path.
func LoadAppKey(path string) (*AppKey, error) {
	// Whoever reads the app key can read and write the namespace.
	data, err := durable.ReadPrivate(path, maxAppKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load app key: %w", err)
	}
	k, err := ParseAppKey(data)
	if err != nil {
		return nil, fmt.Errorf("load app key %s: %w", path, err)
	}
	return k, nil
}

// SaveAppKey writes k to path with mode 0600, atomically: a crash leaves
// either the old file or the complete new one, never a partial key.
func SaveAppKey(path string, k *AppKey) error {
	data, err := k.Marshal()
	if err != nil {
		return fmt.Errorf("save app key: %w", err)
	}
	if err := durable.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("save app key: %w", err)
	}
	return nil
}

// LoadOrGenerateAppKey loads the key at path, or, when no file exists there,
// generates a key and saves it: a peer with no app key of its own uses one
// it made itself.
func LoadOrGenerateAppKey(path string) (*AppKey, error) {
	k, err := LoadAppKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = GenerateAppKey(); err != nil {
		return nil, err
	}
	if err := SaveAppKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}
