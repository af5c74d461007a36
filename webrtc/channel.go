package webrtc

import (
	"errors"
	"net"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/datachannel"
)

// channel is where a session writes its frames: a WebRTC data channel, or
// a WebSocket (websocket.go). Both carry the same frames, one per message.
type channel interface {
	// send writes one frame.
	send(b []byte) error
	// buffered is how many bytes were handed over and not yet
	// acknowledged by the browser (a data channel's bufferedAmount); 0 on
	// a WebSocket, whose writes block instead.
	buffered() uint64
	// direct reports whether a topic's fan-out may write on its own
	// goroutine, because send never waits for the browser.
	direct() bool
}

// dataChannel is a data channel: a write queues in SCTP and returns, so
// the fan-out writes directly to a session that keeps up, and the writer
// watches the buffered amount for backpressure.
type dataChannel struct{ dc *datachannel.DataChannel }

func (d dataChannel) send(b []byte) error {
	_, err := d.dc.WriteDataChannel(b, false)
	return err
}
func (d dataChannel) buffered() uint64 { return d.dc.BufferedAmount() }
func (d dataChannel) direct() bool     { return true }

// wsChannel is a WebSocket: a write blocks while the kernel's send buffer
// is full, so only the session's writer writes, within StallTimeout.
type wsChannel struct {
	conn  *websocket.Conn
	stall time.Duration
}

func (w wsChannel) send(b []byte) error {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.stall)); err != nil {
		return err
	}
	err := w.conn.WriteMessage(websocket.BinaryMessage, b)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return errStalled
	}
	return err
}

// errStalled: a WebSocket write did not complete within StallTimeout.
var errStalled = errors.New("the browser did not read for StallTimeout")

func (w wsChannel) buffered() uint64 { return 0 }
func (w wsChannel) direct() bool     { return false }
