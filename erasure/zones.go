package erasure

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Zones files: what an operator knows about the failure domains of peers.
// One entry a line, a peer id and its zone separated by white space;
// blank lines and lines starting with # are ignored:
//
//	# servers we run
//	12D3KooWA...  eu-west
//	12D3KooWB...  us-east
//
// The file is the operator's: at most maxZonesFile bytes, and a peer listed
// twice is an error (which zone would be meant?).
const maxZonesFile = 4 << 20

// maxZoneLen is the longest zone label, as node's --zone.
const maxZoneLen = 64

var errZone = errors.New("a zone is 1 to 64 bytes without white space")

func checkZone(z string) error {
	if z == "" || len(z) > maxZoneLen || strings.ContainsAny(z, " \t\r\n") {
		return errZone
	}
	return nil
}

// LoadZones reads a zones file (see above).
func LoadZones(path string) (map[peer.ID]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zones file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxZonesFile+1))
	if err != nil {
		return nil, fmt.Errorf("zones file %s: %w", path, err)
	}
	if len(b) > maxZonesFile {
		return nil, fmt.Errorf("zones file %s: larger than %d bytes", path, maxZonesFile)
	}
	zones, err := parseZones(b)
	if err != nil {
		return nil, fmt.Errorf("zones file %s: %w", path, err)
	}
	return zones, nil
}

func parseZones(b []byte) (map[peer.ID]string, error) {
	zones := map[peer.ID]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want a peer id and a zone", n)
		}
		id, err := peer.Decode(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: peer id %q: %v", n, f[0], err)
		}
		if err := checkZone(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := zones[id]; dup {
			return nil, fmt.Errorf("line %d: peer %s listed twice", n, id)
		}
		zones[id] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return zones, nil
}

// zoneOf is the zone placement counts for peer p, which declared zone
// declared: the operator's, else the declared one if DeclaredZones.
func (c *Config) zoneOf(p peer.ID, declared string) string {
	if z, ok := c.Zones[p]; ok {
		return z
	}
	if c.DeclaredZones {
		return declared
	}
	return ""
}

// loadZonesFile adds the entries of ZonesFile to (a copy of) Zones. A peer
// given two different zones is an error.
func (c *Config) loadZonesFile() error {
	fz, err := LoadZones(c.ZonesFile)
	if err != nil {
		return err
	}
	zones := maps.Clone(c.Zones)
	if zones == nil {
		zones = map[peer.ID]string{}
	}
	for p, z := range fz {
		if old, ok := zones[p]; ok && old != z {
			return fmt.Errorf("zones file %s: peer %s is in zone %q there and %q in Zones", c.ZonesFile, p, z, old)
		}
		zones[p] = z
	}
	c.Zones = zones
	return nil
}
