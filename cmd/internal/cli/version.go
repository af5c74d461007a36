package cli

import (
	"fmt"
	"runtime/debug"
)

// Version describes the running binary from its build information: the
// module version ("(devel)" for a build from a checkout) and the VCS
// revision, with "+dirty" when the work tree had changes, and the Go
// version.
func Version(command string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return command + " (no build information)"
	}
	rev, dirty, at := "unknown", "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		case "vcs.time":
			at = " " + s.Value
		}
	}
	return fmt.Sprintf("%s %s %s (revision %s%s%s, %s)", command, bi.Main.Path, bi.Main.Version, rev, dirty, at, bi.GoVersion)
}
