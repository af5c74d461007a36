package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), identityFile)
	k1, created, err := loadOrCreateIdentity(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created=%v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", st.Mode().Perm())
	}
	k2, created, err := loadOrCreateIdentity(path)
	if err != nil || created {
		t.Fatalf("reload: %v, created=%v", err, created)
	}
	if !k1.Equals(k2) {
		t.Fatal("identity changed on reload")
	}
}

func TestIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	open := filepath.Join(dir, "open")
	if _, _, err := loadOrCreateIdentity(open); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644)
	unreadable := filepath.Join(dir, "dir-not-file")
	os.Mkdir(unreadable, 0o700)

	for path, want := range map[string]string{
		garbage:    "not a libp2p private key",
		open:       "chmod 600",
		unreadable: "read identity",
	} {
		before, _ := os.ReadFile(path)
		_, _, err := loadOrCreateIdentity(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", filepath.Base(path), err, want)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("%s: file changed by a failed load", filepath.Base(path))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "bootstrap": BootstrapConfig(), "volunteer": VolunteerConfig()} {
		cfg.DataDir = t.TempDir()
		if err := cfg.validate(); err != nil {
			t.Errorf("%s preset invalid: %v", name, err)
		}
	}
	for want, mutate := range map[string]func(*Config){
		"DataDir":                 func(c *Config) { c.DataDir = "" },
		"ListenAddrs":             func(c *Config) { c.ListenAddrs = []string{"/ip4/1.2.3.4/tcp/notaport"} },
		"must end in":             func(c *Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/4001"} },
		"MaxMemory":               func(c *Config) { c.Limits.MaxMemory = 1 },
		"ConnHighWater":           func(c *Config) { c.Limits.ConnHighWater = c.Limits.ConnLowWater },
		"MaxInbound":              func(c *Config) { c.Limits.MaxInboundConns = c.Limits.MaxConns + 1 },
		"HTTPMaxConns must":       func(c *Config) { c.Limits.HTTPMaxConns = 0 },
		"HTTPMaxConnsPerIP must":  func(c *Config) { c.Limits.HTTPMaxConnsPerIP = -1 },
		"HTTPMaxConnsPerNet must": func(c *Config) { c.Limits.HTTPMaxConnsPerNet = c.Limits.HTTPMaxConnsPerIP - 1 },
		"MaxMessageSize":          func(c *Config) { c.Overlay.MaxMessageSize = 0 },
	} {
		c := DefaultConfig()
		c.DataDir = t.TempDir()
		mutate(&c)
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: validate() = %v", want, err)
		}
	}
}
