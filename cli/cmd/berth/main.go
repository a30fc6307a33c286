// Command berth is the command line of berth: it talks to berthd over its
// socket and keeps no state of its own.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/berth-engine/berth/cli/command"
	"github.com/berth-engine/berth/internal/version"
)

func main() {
	// berth lives for one command: collecting garbage less often saves CPU
	// (a tenth of `berth images` over 1,000 images) for little memory.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command.Run(ctx, os.Args[1:], command.StdStreams(), command.BuildInfo{Version: version.Version, Revision: version.Revision})
	stop()
	os.Exit(code)
}
