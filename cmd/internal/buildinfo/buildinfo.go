// Package buildinfo holds the version stamped into the binaries at build
// time (make build sets Version with -ldflags).
package buildinfo

import "runtime/debug"

// Version is the release or commit the binary was built from.
var Version = ""

// String returns Version, or the module version Go recorded, or "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}
