package webrtc

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// answerSigner is the volunteer a relayed offer (SignalPath?peer=) is for:
// its answer must be signed by the key its peer ID names, as the JS client
// checks, so that the forwarding peer cannot answer in its place.
type answerSigner struct {
	id  string
	key ed25519.PublicKey
}

// relayedSigner returns the signer offerURL's peer parameter names, nil
// for an offer to the server itself (no peer parameter).
func relayedSigner(offerURL string) (*answerSigner, error) {
	u, err := url.Parse(offerURL)
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	id := u.Query().Get("peer")
	if id == "" {
		return nil, nil
	}
	pid, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("offer: peer %q is not a peer ID: %w", id, err)
	}
	pub, err := pid.ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("offer: peer %q does not name an Ed25519 key, so its answer could not be verified", id)
	}
	raw, err := pub.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("offer: peer %q: bad Ed25519 key", id)
	}
	return &answerSigner{id: id, key: raw}, nil
}

// verify checks that ans answers offerSDP and is signed by the volunteer.
func (a *answerSigner) verify(offerSDP string, ans *relayedAnswer) error {
	sig, err := base64.RawURLEncoding.DecodeString(ans.Sig)
	switch {
	case ans.Peer != a.id:
		return fmt.Errorf("offer: the relayed answer is from %q, not the peer asked for (%s)", ans.Peer, a.id)
	case err != nil || !ed25519.Verify(a.key, AnswerSignedBytes(offerSDP, ans.SDP), sig):
		return errors.New("offer: the relayed answer is not signed by the peer asked for: refused")
	}
	return nil
}
