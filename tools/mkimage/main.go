// Command mkimage builds berth's test images deterministically from Debian's
// busybox-static, as a docker save tarball or an OCI layout tar.
//
//	mkimage [flags] busybox
//	mkimage [flags] layers [-size BYTES]
//	mkimage [flags] random [-layers N] [-size BYTES]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

const usage = `Usage: mkimage [flags] KIND [kind flags]

Builds a test image deterministically: the same flags give the same bytes.

Kinds:
  busybox   one layer: /bin/busybox, an applet symlink per 'busybox --list' entry, /etc/passwd, /etc/group, /tmp, ...
  layers    busybox plus three layers with a whiteout, an opaque directory, a directory replaced by a file and
            back, hard links within and across layers, symlinks, a setuid file, a fifo, an xattr and a large
            file (-size, default 8MiB)
  random    -layers N (default 5) layers of incompressible data totalling -size bytes (default 100MB); no busybox

Flags (before or after KIND):
`

// options are the flags common to every kind.
type options struct {
	format  string
	output  string
	names   []string
	busybox string
	arch    string
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.format, "format", o.format, "archive format: docker (docker save tarball, uncompressed layers) or oci (OCI layout tar, gzip layers)")
	fs.StringVar(&o.output, "o", o.output, "output file; - for standard output")
	fs.Func("name", "image name, may be repeated (default depends on KIND: busybox:latest, berth-test/layers:latest, berth-test/random:latest)", func(s string) error {
		o.names = append(o.names, s)
		return nil
	})
	fs.StringVar(&o.busybox, "busybox", o.busybox, "path of a static busybox binary")
	fs.StringVar(&o.arch, "arch", o.arch, "architecture written in the image config")
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer, stderr io.Writer) error {
	opts := &options{format: string(imagegen.FormatDocker), output: "-", busybox: imagegen.DefaultBusybox, arch: runtime.GOARCH}
	top := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	top.SetOutput(stderr)
	opts.register(top)
	top.Usage = func() {
		fmt.Fprint(stderr, usage)
		top.PrintDefaults()
	}
	if err := top.Parse(args); err != nil {
		return err
	}
	if top.NArg() == 0 {
		top.Usage()
		return errors.New("missing KIND: busybox, layers or random")
	}
	kind := top.Arg(0)
	fs := flag.NewFlagSet("mkimage "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts.register(fs)
	var size sizeFlag
	layers := 5
	switch kind {
	case "busybox":
	case "layers":
		size = 8 << 20
		fs.Var(&size, "size", "size of the large file (bytes, or with a unit: 8MiB, 100MB)")
	case "random":
		size = 100_000_000
		fs.Var(&size, "size", "total size of the random data (bytes, or with a unit: 8MiB, 100MB)")
		fs.IntVar(&layers, "layers", layers, "number of layers")
	default:
		top.Usage()
		return fmt.Errorf("unknown KIND %q: use busybox, layers or random", kind)
	}
	if err := fs.Parse(top.Args()[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	format := imagegen.Format(opts.format)
	if format != imagegen.FormatDocker && format != imagegen.FormatOCI {
		return fmt.Errorf("unknown -format %q: use docker or oci", opts.format)
	}

	gen := imagegen.Options{Busybox: opts.busybox, Architecture: opts.arch}
	var (
		img         *imagegen.Image
		err         error
		defaultName string
	)
	switch kind {
	case "busybox":
		img, err = imagegen.Busybox(gen)
		defaultName = "busybox:latest"
	case "layers":
		img, err = imagegen.Layers(gen, int64(size))
		defaultName = "berth-test/layers:latest"
	case "random":
		img, err = imagegen.Random(layers, int64(size), opts.arch)
		defaultName = "berth-test/random:latest"
	}
	if err != nil {
		return err
	}
	names := opts.names
	if len(names) == 0 {
		names = []string{defaultName}
	}
	return writeOutput(opts.output, stdout, func(w io.Writer) error {
		return imagegen.WriteArchive(w, format, imagegen.Named{Image: img, Names: names})
	})
}

// writeOutput writes to standard output (never a terminal) or to a file that
// appears only once complete.
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		if f, ok := stdout.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return errors.New("refusing to write an archive to a terminal: use -o FILE or redirect standard output")
			}
		}
		return write(stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// sizeFlag is a byte count with an optional unit (KB, MB, GB, KiB, MiB, GiB).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000},
		{"B", 1},
	}
	mult := int64(1)
	num := v
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q: use a byte count such as 1048576, 8MiB or 100MB", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}
