package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/peer"
)

// connectIdentified connects from to to and returns once from has
// identified to (so it knows the protocols to serves).
func connectIdentified(t *testing.T, from, to *Node) {
	t.Helper()
	sub, err := from.Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := from.Host().Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	known := func() bool {
		protos, _ := from.Host().Peerstore().GetProtocols(to.ID())
		return len(protos) > 0
	}
	for !known() {
		select {
		case <-sub.Out():
		case <-ctx.Done():
			t.Fatalf("%s never identified %s", from.ID(), to.ID())
		}
	}
}

// fakeOffer passes the form checks of an offer; the tests below are
// refused before anything parses it.
const fakeOffer = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"

// TestRelayedSignalingForward, on the simulated network (in real time, not
// in a synctest bubble: the volunteers' WebRTC servers hold real UDP
// sockets, which a bubble's clock cannot wait on): a peer that serves
// browsers forwards an offer over /immense/signal/1.0.0 to a connected
// volunteer, which checks the token (a bad one comes back as the
// volunteer's 401); it forwards nothing to a peer that does not serve
// browsers, to one it is not connected to, or for a malformed peer ID, and
// lists only the peers it would forward to.
func TestRelayedSignalingForward(t *testing.T) {
	func() {
		secret := []byte(strings.Repeat("s", 32))
		nodes := simNetwork(t, 4, func(i int, c *Config) {
			if i == 1 || i == 2 { // 1 forwards, 2 volunteers; 3 serves no browsers
				bc := webrtc.DefaultConfig()
				bc.LoopbackOnly = true
				bc.Secret = secret
				c.Browsers = &bc
			}
		})
		fwd, vol, plain := nodes[1], nodes[2], nodes[3]
		connectIdentified(t, fwd, vol)
		connectIdentified(t, fwd, plain)
		k, _, _ := crypto.GenerateEd25519Key(nil)
		far, _ := peer.IDFromPrivateKey(k) // a peer it never met
		h := fwd.Handler(HTTPOptions{Topics: true})
		post := func(peerID, body string) (int, string) {
			r := httptest.NewRequest("POST", webrtc.SignalPath+"?peer="+peerID, strings.NewReader(body))
			r.RemoteAddr = "192.0.2.1:1234"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b, _ := io.ReadAll(rec.Body)
			return rec.Code, string(b)
		}
		offer := func(token string) string {
			b, _ := json.Marshal(map[string]string{"sdp": fakeOffer, "token": token})
			return string(b)
		}
		if code, body := post(vol.ID().String(), offer("x.y.z")); code != http.StatusUnauthorized || !strings.Contains(body, "malformed") {
			t.Errorf("bad token through the relay: %d %s, want the volunteer's 401", code, body)
		}
		if code, body := post(vol.ID().String(), offer("")); code != http.StatusUnauthorized || !strings.Contains(body, "token required") {
			t.Errorf("no token through the relay: %d %s, want the volunteer's 401", code, body)
		}
		for name, id := range map[string]string{
			"serves no browsers": plain.ID().String(),
			"not connected":      far.String(),
			"not a peer ID":      "12D3KooWnotapeer",
			"itself":             fwd.ID().String(),
		} {
			if code, body := post(id, offer("x.y.z")); code != http.StatusNotFound {
				t.Errorf("%s: %d %s, want 404", name, code, body)
			}
		}
		served := metricSum(t, vol, "immense_webrtc_relayed_offers_total")
		if served != 2 {
			t.Errorf("the volunteer counted %v relayed offers, want 2", served)
		}

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", webrtc.SignalPeersPath, nil))
		var list struct{ Peers []webrtc.SignalPeer }
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("peers: %d %s", rec.Code, rec.Body)
		}
		if len(list.Peers) != 1 || list.Peers[0].ID != vol.ID().String() || list.Peers[0].Reachability != "public" {
			t.Errorf("peers %+v, want only the volunteer, public", list.Peers)
		}
	}()
}

// TestRelayedSignalingSession: a Go client connects to a volunteer through
// another peer's signal endpoint, over real loopback networking; the answer
// is signed by the volunteer's libp2p key; the session is the
// volunteer's, and carries its topics.
func TestRelayedSignalingSession(t *testing.T) {
	peers, servers := loopbackNet(t, 2, nil)
	fwd, vol := peers[0], peers[1]
	connectIdentified(t, fwd, vol)
	url := servers[0].URL() + webrtc.SignalPath + "?peer=" + vol.ID().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The signature, as a browser checks it.
	var answer struct{ Type, SDP, Peer, Sig string }
	hc := &http.Client{Transport: signedAnswerTap{&answer}}
	c, err := webrtc.Dial(ctx, url, "", webrtc.WithLoopbackOnly(), webrtc.WithHTTPClient(hc))
	if err != nil {
		t.Fatalf("dial through the relay: %v", err)
	}
	defer c.Close()
	pub, err := vol.ID().ExtractPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := pub.Raw()
	sig, _ := base64.RawURLEncoding.DecodeString(answer.Sig)
	if answer.Peer != vol.ID().String() || !ed25519.Verify(raw, webrtc.AnswerSignedBytes(answerOffer, answer.SDP), sig) {
		t.Fatalf("the relayed answer is not signed by the volunteer: %+v", answer)
	}
	if vol.browsers.Sessions() != 1 || fwd.browsers.Sessions() != 0 {
		t.Fatalf("sessions: volunteer %d, forwarder %d", vol.browsers.Sessions(), fwd.browsers.Sessions())
	}

	if err := c.Subscribe(ctx, "relayed"); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(ctx, "relayed", []byte("via the volunteer")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Messages():
		if string(m.Data) != "via the volunteer" {
			t.Fatalf("got %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatal("nothing arrived")
	}
}

// answerOffer is the last offer signedAnswerTap saw go out.
var answerOffer string

// signedAnswerTap records the offer sent and the relayed answer.
type signedAnswerTap struct{ answer any }

func (s signedAnswerTap) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	var req struct{ SDP string }
	_ = json.Unmarshal(b, &req)
	answerOffer = req.SDP
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = json.Unmarshal(rb, s.answer)
	resp.Body = io.NopCloser(strings.NewReader(string(rb)))
	return resp, nil
}
