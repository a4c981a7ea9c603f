// Package version reports the build's version and commit, stamped by the
// linker (see the Makefile's LDFLAGS). Both binaries print it in their
// `version` command and in their status reports.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// These are set at link time with -X; they are never written at run time.
var (
	version = "dev"
	commit  = ""
)

// Info describes one build.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// Get returns the build information of the running binary. When the
// linker did not stamp a commit, the VCS revision recorded by the Go
// toolchain is used if there is one.
func Get() Info {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return Info{Version: version, Commit: c, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// String renders the information on one line, for `version` commands.
func (i Info) String() string {
	c := i.Commit
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s, %s/%s)", i.Version, c, i.Go, i.OS, i.Arch)
}
