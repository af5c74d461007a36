package webrtc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

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
	se.LoggerFactory = newPionLogFactory(o.log)
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
// attribute pion=<scope>. Loggers are made once per scope and shared:
// pion asks for several per connection (ICE, DTLS, SCTP, data channel),
// and each slog.Logger.With copies the handler, about 0.8 KiB per browser.
type pionLogFactory struct {
	log    *slog.Logger
	scopes *sync.Map // scope -> pionLogger
}

func newPionLogFactory(log *slog.Logger) pionLogFactory {
	return pionLogFactory{log: log, scopes: new(sync.Map)}
}

// pion's trace, debug and info levels are far below anything useful in
// production.
const levelTrace = slog.LevelDebug - 4

func (f pionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	if l, ok := f.scopes.Load(scope); ok {
		return l.(pionLogger)
	}
	l := f.log.With("pion", scope)
	// pion logs a lot on hot paths; deciding once per logger keeps the
	// disabled case to a bool test.
	pl := pionLogger{
		log:     l,
		traceOn: l.Enabled(context.Background(), levelTrace),
		debugOn: l.Enabled(context.Background(), slog.LevelDebug),
	}
	f.scopes.Store(scope, pl)
	return pl
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
