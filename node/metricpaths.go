package node

import (
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sourcePath matches a label value that is a Go source position, as
// libp2p's event bus names its subscribers when they give no name
// (libp2p_eventbus_subscriber_*{subscriber_name="/root/go/pkg/mod/github.com/libp2p/go-libp2p-pubsub/gossipsub.go-L708"}).
var sourcePath = regexp.MustCompile(`^/.*\.go-L[0-9]+$`)

// withoutBuildPaths serves g's metrics with source positions in label
// values cut down to the package path (github.com/libp2p/go-libp2p-pubsub/gossipsub.go-L708):
// the module cache's place on the build machine, and its user's home
// directory, are nobody's business, and they change between builds.
func withoutBuildPaths(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if v := l.GetValue(); sourcePath.MatchString(v) {
						short := trimBuildPath(v)
						l.Value = &short
					}
				}
			}
		}
		return mfs, err
	})
}

// trimBuildPath cuts an absolute source path down to the module path and
// what follows (module cache), or to its last two elements (a checkout).
func trimBuildPath(p string) string {
	if _, rest, ok := strings.Cut(p, "/pkg/mod/"); ok {
		return rest
	}
	parts := strings.Split(p, "/")
	return strings.Join(parts[max(0, len(parts)-2):], "/")
}
