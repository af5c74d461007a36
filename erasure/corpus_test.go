package erasure

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// seedCorpora are the seed inputs kept in testdata/fuzz/<Fuzz>/, which
// `go test` runs as regular test cases and `go test -fuzz` starts from.
func seedCorpora(t *testing.T) map[string][][]byte {
	k, _ := GenerateAppKey()
	m := testManifest(t, k, 1)
	good, _ := m.Sign(k)
	ts, _ := (&Manifest{Object: m.Object, Version: 2, Tombstone: true}).Sign(k)
	truncated := good[:len(good)-10]
	var wire [][]byte
	for _, q := range sampleRequests() {
		wire = append(wire, q.encode())
	}
	for _, r := range sampleResponses() {
		wire = append(wire, r.encode())
	}
	wire = append(wire, []byte{1, msgCheck, 0, 0xff, 0xff}, []byte{0, 0, 0, 5, 1, 2})
	_, hint, _ := testHint(t)
	refs := encodeRefs(sampleRefs())
	_, deleg := testDelegation(t, k)
	_, _, rhint, _ := testRepairHint(t, k)
	return map[string][][]byte{
		"FuzzManifestDecode":   {good, ts, truncated, []byte("IMMF\x01\x00")},
		"FuzzWireDecode":       wire,
		"FuzzHandoffDecode":    {hint, hint[:len(hint)-10], append(bytes.Clone(hint), 0), []byte("IMHO\x01")},
		"FuzzKeyFileDecode":    keyFileSeeds(),
		"FuzzRefsDecode":       {refs, refs[:len(refs)-3], encodeRefs(sampleRefs()[:1]), []byte("IMSR\x01\x00")},
		"FuzzDelegationDecode": {deleg, deleg[:len(deleg)-10], append(bytes.Clone(deleg), 0), []byte("IMDG\x01")},
		"FuzzRepairHintDecode": {rhint, rhint[:len(rhint)-10], append(bytes.Clone(rhint), 0), []byte("IMRH\x01")},
	}
}

// TestFuzzSeedCorpus checks the seed corpora are present (rewrite them with
// go test -run TestFuzzSeedCorpus -update-corpus).
func TestFuzzSeedCorpus(t *testing.T) {
	for name, seeds := range seedCorpora(t) {
		dir := filepath.Join("testdata", "fuzz", name)
		if *updateCorpus {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, s := range seeds {
				body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
				file := fmt.Sprintf("seed-%x", sha256.Sum256(s))[:21]
				if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(files) < 4 {
			t.Fatalf("%s: %d seed files, want at least 4", name, len(files))
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil || !strings.HasPrefix(string(b), "go test fuzz v1\n[]byte(") {
				t.Fatalf("%s/%s: not a fuzz corpus file", name, f.Name())
			}
		}
	}
}
