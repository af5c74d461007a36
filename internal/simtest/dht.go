package simtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
)

// RawPutValue sends one DHT PUT_VALUE of key and value to p over the kad
// protocol under prefix (e.g. "/immense"), as any peer can with no DHT of
// its own (an attacker's record, say), and reports whether p stored it:
// a server echoes a record it stored and resets the stream otherwise.
func RawPutValue(ctx context.Context, h host.Host, p peer.ID, prefix protocol.ID, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, prefix+"/kad/1.0.0")
	if err != nil {
		return err
	}
	defer s.Close()
	msg := dhtpb.NewMessage(dhtpb.Message_PUT_VALUE, []byte(key), 0)
	msg.Record = &recpb.Record{Key: []byte(key), Value: value}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(msg); err != nil {
		return err
	}
	var resp dhtpb.Message
	if err := pbio.NewDelimitedReader(s, 1<<20).ReadMsg(&resp); err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	if !bytes.Equal(resp.GetRecord().GetValue(), value) {
		return errors.New("answer does not echo the record")
	}
	return nil
}
