// Package version tells which berth this is. The Makefile sets Version and
// Revision at link time:
//
//	go build -ldflags "-X github.com/berth-engine/berth/internal/version.Version=v0.1.0 \
//	    -X github.com/berth-engine/berth/internal/version.Revision=$(git rev-parse HEAD)"
package version

// These are variables, not constants, so that the linker can set them; nothing
// else writes them.
var (
	// Version is the release, or "dev" for a build outside the Makefile.
	Version = "dev"
	// Revision is the source control revision the binary was built from.
	Revision = "unknown"
)
