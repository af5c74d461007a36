package webrtc

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	pion "github.com/pion/webrtc/v4"
)

// dataChannelLabel is the label of the one data channel a client opens.
// The server ignores (closes) channels with any other label.
const dataChannelLabel = "immense"

// transportOptions are the ICE settings shared by Server and Client.
type transportOptions struct {
	loopbackOnly      bool
	portMin, portMax  uint16
	publicIPs         []string
	maxMessageSize    int
	receiveBufferSize uint32 // 0 = pion's default
	iceLite           bool   // the server answers as ICE-lite where it can (icelite.go)
	log               *slog.Logger
}

// newAPI builds the pion API of the Go client (client.go) and of the
// benchmark's bare-pion baseline, with pion's defaults otherwise. The
// server does not use pion's PeerConnection (dclink.go).
func newAPI(o transportOptions) (*pion.API, error) {
	var se pion.SettingEngine
	se.LoggerFactory = pionLogFactory{o.log}
	if o.maxMessageSize > 0 {
		// Advertised to the other end as a=max-message-size, so a
		// conforming browser refuses to send larger frames at all.
		se.SetSCTPMaxMessageSize(uint32(o.maxMessageSize))
	}
	if o.receiveBufferSize > 0 {
		se.SetSCTPMaxReceiveBufferSize(o.receiveBufferSize)
	}
	if o.portMin != 0 {
		if err := se.SetEphemeralUDPPortRange(o.portMin, o.portMax); err != nil {
			return nil, fmt.Errorf("UDP port range %d-%d: %w", o.portMin, o.portMax, err)
		}
	}
	if len(o.publicIPs) > 0 {
		se.SetNAT1To1IPs(o.publicIPs, pion.ICECandidateTypeHost)
	}
	if o.loopbackOnly {
		// pion skips loopback addresses unless told otherwise; the filter
		// then removes everything else, and with mDNS off nothing is
		// multicast on the LAN.
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil })
		se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	return pion.NewAPI(pion.WithSettingEngine(se)), nil
}

// udpMuxBuffer is the socket buffer asked for the shared UDP sockets.
const udpMuxBuffer = 4 << 20

// listenUDPMux binds the server's UDP mux: one socket per local address
// (IPv4 loopback only with loopbackOnly), on the first port of the range
// that every address can bind.
func listenUDPMux(o transportOptions) (*ice.MultiUDPMuxDefault, error) {
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithLogger(pionLogFactory{o.log}.NewLogger("udpmux")),
		// One socket now takes what a socket per session took: every
		// browser's acknowledgements and handshakes. The kernel's default
		// buffer (208 KiB on Linux) overflows at a few hundred browsers,
		// and lost handshake packets fail connections. Linux caps this at
		// net.core.rmem_max / wmem_max (docs/operating.md).
		ice.UDPMuxFromPortWithReadBufferSize(udpMuxBuffer),
		ice.UDPMuxFromPortWithWriteBufferSize(udpMuxBuffer),
	}
	if o.loopbackOnly {
		opts = append(opts,
			ice.UDPMuxFromPortWithLoopback(),
			ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil }),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4))
	} else {
		// Not link-local addresses: no browser reaches the peer through
		// one, and binding an IPv6 one fails while the address is still
		// tentative (just after an interface comes up), which would fail
		// the whole server.
		opts = append(opts, ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return ip.IsGlobalUnicast() }))
	}
	lo, hi := int(o.portMin), int(o.portMax)
	var err error
	for port := lo; port <= hi; port++ {
		var mux *ice.MultiUDPMuxDefault
		if mux, err = ice.NewMultiUDPMuxFromPort(port, opts...); err == nil {
			return mux, nil
		}
	}
	if lo == hi {
		return nil, fmt.Errorf("browser UDP socket on port %d: %w", lo, err)
	}
	return nil, fmt.Errorf("browser UDP socket: no port of %d-%d is free: %w", lo, hi, err)
}

func toPionICEServers(servers []ICEServer, loopbackOnly bool) []pion.ICEServer {
	if loopbackOnly {
		return nil // nothing off the host may be contacted
	}
	out := make([]pion.ICEServer, 0, len(servers))
	for _, s := range servers {
		ps := pion.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			ps.Credential = s.Credential
		}
		out = append(out, ps)
	}
	return out
}

// pionLogFactory routes pion's logs to slog. pion reports the routine
// failures of browsers coming and going as errors; an operator can do
// nothing about them, so they are logged at debug level, under the
// attribute pion=<scope>.
type pionLogFactory struct{ log *slog.Logger }

// pion's trace, debug and info levels are far below anything useful in
// production.
const levelTrace = slog.LevelDebug - 4

func (f pionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	l := f.log.With("pion", scope)
	// pion logs a lot on hot paths; deciding once per logger (pion makes
	// one per connection) keeps the disabled case to a bool test.
	return pionLogger{
		log:     l,
		traceOn: l.Enabled(context.Background(), levelTrace),
		debugOn: l.Enabled(context.Background(), slog.LevelDebug),
	}
}

type pionLogger struct {
	log              *slog.Logger
	traceOn, debugOn bool
}

// low logs pion's trace, debug and info messages; high its warnings and
// errors.
func (l pionLogger) low(format string, args ...any) {
	if l.traceOn {
		l.log.Log(context.Background(), levelTrace, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) high(format string, args ...any) {
	if l.debugOn {
		l.log.Log(context.Background(), slog.LevelDebug, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  { l.low("%s", msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.low(format, args...) }
func (l pionLogger) Debug(msg string)                  { l.low("%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.low(format, args...) }
func (l pionLogger) Info(msg string)                   { l.low("%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.low(format, args...) }
func (l pionLogger) Warn(msg string)                   { l.high("%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.high(format, args...) }
func (l pionLogger) Error(msg string)                  { l.high("%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.high(format, args...) }
