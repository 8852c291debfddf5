package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version and commit may be set at link time (-ldflags "-X main.version=v1.2.3
// -X main.commit=abc123") where the build has no module version or VCS
// information (a Docker build without .git). Empty means: ask the build info.
var version, commit string

// mainLibraries are the dependencies whose versions `eddy version` prints:
// the ones that decide how eddy talks to Kafka and the registry, stores
// state and serves metrics.
var mainLibraries = []string{
	"github.com/twmb/franz-go",
	"github.com/cockroachdb/pebble/v2",
	"github.com/hamba/avro/v2",
	"github.com/expr-lang/expr",
	"github.com/prometheus/client_golang",
	"github.com/spf13/cobra",
}

// versionInfo is what `eddy version` and `eddy --version` print.
type versionInfo struct {
	Version   string // module version, or "(devel)" for a build from a work tree
	Commit    string // VCS revision, with "+dirty" when the tree had changes; "unknown" without VCS information
	Time      string // VCS commit time, RFC 3339; empty when unknown
	GoVersion string
	Platform  string      // GOOS/GOARCH
	Libraries [][2]string // module path and version, in mainLibraries order; absent ones left out
}

// buildVersion reads the build information the Go toolchain embeds.
func buildVersion() versionInfo {
	v := versionInfo{Version: "(devel)", Commit: "unknown", GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && v.Commit != "unknown" {
			v.Commit += "+dirty"
		}
		deps := make(map[string]string, len(bi.Deps))
		for _, d := range bi.Deps {
			if d.Replace != nil {
				deps[d.Path] = d.Replace.Version
			} else {
				deps[d.Path] = d.Version
			}
		}
		for _, lib := range mainLibraries {
			if ver, ok := deps[lib]; ok {
				v.Libraries = append(v.Libraries, [2]string{lib, ver})
			}
		}
	}
	if version != "" {
		v.Version = version
	}
	if commit != "" {
		v.Commit = commit
	}
	return v
}

func (v versionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "eddy %s\n", v.Version)
	c := v.Commit
	if v.Time != "" {
		c += " (" + v.Time + ")"
	}
	fmt.Fprintf(&b, "commit  %s\n", c)
	fmt.Fprintf(&b, "go      %s %s\n", v.GoVersion, v.Platform)
	for _, l := range v.Libraries {
		fmt.Fprintf(&b, "        %s %s\n", l[0], l[1])
	}
	return b.String()
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print eddy's version, commit, Go version and the versions of its main libraries",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), buildVersion().String())
		},
	}
}
