// berth-shim is the per-container shim: `start` daemonises a shim for a
// bundle and prints its ttrpc address, `delete` cleans up after a shim
// that died. The daemon itself runs as the hidden `serve` command.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/berth-engine/berth/shim"
	"github.com/berth-engine/berth/shim/runtime"
)

const usage = `usage: berth-shim start|delete --bundle DIR [--id ID] [--namespace NS]
         [--runtime runc] [--runtime-root DIR] [--state /run/berth]`

type options struct {
	id, namespace, bundle   string
	runtimeBin, runtimeRoot string
	stateDir                string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet("berth-shim "+cmd, flag.ContinueOnError)
	var o options
	fs.StringVar(&o.id, "id", "", "container id (default: the bundle's folder name)")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace of the container")
	fs.StringVar(&o.bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&o.runtimeBin, "runtime", runtime.DefaultBinary, "OCI runtime binary (path or name): runc, crun")
	fs.StringVar(&o.runtimeRoot, "runtime-root", "", "runtime state directory (default /run/berth/runc/<namespace>)")
	fs.StringVar(&o.stateDir, "state", "/run/berth", "berth state directory, for sockets that do not fit in the bundle")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if err := run(cmd, o); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func run(cmd string, o options) error {
	if o.bundle == "" {
		return fmt.Errorf("no --bundle given: pass the container's bundle directory")
	}
	bundle, err := filepath.Abs(o.bundle)
	if err != nil {
		return err
	}
	if o.id == "" {
		o.id = filepath.Base(bundle)
	}
	if o.runtimeRoot == "" {
		o.runtimeRoot = filepath.Join(o.stateDir, "runc", o.namespace)
	}
	cfg := shim.Config{
		ID: o.id, Namespace: o.namespace, Bundle: bundle,
		Runtime: &runtime.Runtime{Binary: o.runtimeBin, Root: o.runtimeRoot},
	}
	ctx := context.Background()
	switch cmd {
	case "start":
		addr, proc, err := shim.StartDaemon(shim.StartOpts{Config: cfg, StateDir: o.stateDir, Args: shim.ServeArgs(cfg, o.stateDir)})
		if err != nil {
			return err
		}
		proc.Release() // init inherits the daemon when this process exits
		fmt.Println(addr)
		return nil
	case "serve":
		// The shim lives as long as its container, mostly idle: keep the
		// heap small rather than collect rarely.
		debug.SetGCPercent(25)
		return shim.Serve(ctx, cfg, o.stateDir)
	case "delete":
		e, err := shim.Cleanup(ctx, cfg, o.stateDir)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(e)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}
