package imagegen

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"runtime"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// Image is an image to build: its layers, bottom first, and its config.
type Image struct {
	Platform ocispec.Platform
	Config   ocispec.ImageConfig
	Layers   []*Layer
}

// Options say where the busybox binary comes from.
type Options struct {
	// Busybox is the path of a statically linked busybox; DefaultBusybox
	// when empty.
	Busybox string
	// Applets are the names to link to busybox in /bin; when nil they are
	// read from `busybox --list`.
	Applets []string
	// Architecture of the image config; runtime.GOARCH when empty.
	Architecture string
}

func (o Options) busybox() string {
	if o.Busybox == "" {
		return DefaultBusybox
	}
	return o.Busybox
}

func (o Options) platform() ocispec.Platform {
	arch := o.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	return ocispec.Platform{OS: "linux", Architecture: arch}
}

func (o Options) applets() ([]string, error) {
	if o.Applets != nil {
		return o.Applets, nil
	}
	out, err := exec.Command(o.busybox(), "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing applets with '%s --list' (install busybox-static, or pass the path of a static busybox): %w", o.busybox(), err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name := strings.TrimSpace(sc.Text()); name != "" {
			applets = append(applets, name)
		}
	}
	return applets, sc.Err()
}

func defaultConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}
}

// BusyboxLayer returns the single layer of the busybox image: the binary,
// one symlink per applet in /bin, a minimal /etc and the usual empty
// directories.
func BusyboxLayer(opts Options) (*Layer, error) {
	applets, err := opts.applets()
	if err != nil {
		return nil, err
	}
	bin, err := HostFile("bin/busybox", 0o755, opts.busybox())
	if err != nil {
		return nil, fmt.Errorf("reading busybox binary (install busybox-static): %w", err)
	}
	l := &Layer{
		CreatedBy: "berth mkimage: busybox",
		Entries: []Entry{
			Dir("bin", 0o755),
			bin,
			Dir("dev", 0o755),
			Dir("etc", 0o755),
			File("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n")),
			File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
			Dir("proc", 0o555),
			Dir("root", 0o700),
			Dir("sys", 0o555),
			Dir("tmp", 0o1777),
		},
	}
	seen := map[string]bool{"busybox": true}
	sort.Strings(applets)
	for _, a := range applets {
		if seen[a] || strings.Contains(a, "/") {
			continue
		}
		seen[a] = true
		l.Entries = append(l.Entries, Symlink("bin/"+a, "busybox"))
	}
	return l, nil
}

// Busybox returns the one-layer busybox image.
func Busybox(opts Options) (*Image, error) {
	l, err := BusyboxLayer(opts)
	if err != nil {
		return nil, err
	}
	return &Image{Platform: opts.platform(), Config: defaultConfig(), Layers: []*Layer{l}}, nil
}

// XattrKey and XattrValue are the extended attribute set on
// /data/xattr.txt of the layers image.
const (
	XattrKey   = "user.berth"
	XattrValue = "berth-test-xattr"
)

// Layers returns a four-layer image on top of busybox that holds what layer
// appliers get wrong: a whiteout, an opaque directory, a directory replaced
// by a file and back, hard links within and across layers, symlinks, a
// setuid file, a fifo, an extended attribute and a large file of bigSize
// pseudo-random bytes.
func Layers(opts Options, bigSize int64) (*Image, error) {
	img, err := Busybox(opts)
	if err != nil {
		return nil, err
	}
	xattr := File("data/xattr.txt", 0o644, []byte("this file has an extended attribute\n"))
	xattr.Header.PAXRecords = map[string]string{"SCHILY.xattr." + XattrKey: XattrValue}
	img.Layers = append(img.Layers,
		&Layer{
			CreatedBy: "berth mkimage: files, links, special files",
			Entries: []Entry{
				Dir("data", 0o755),
				File("data/a-original.txt", 0o644, []byte("hello from layer 1\n")),
				Hardlink("data/b-hardlink", "data/a-original.txt"),
				RandomFile("data/big", 0o644, bigSize, "berth-layers-big"),
				Fifo("data/fifo", 0o644),
				Symlink("data/link-absolute", "/bin/busybox"),
				Symlink("data/link-relative", "a-original.txt"),
				File("data/setuid", 0o4755, []byte("#!/bin/sh\nid -u\n")),
				xattr,
				Dir("etc", 0o755),
				File("etc/removed-later", 0o644, []byte("removed by a whiteout in the next layer\n")),
				Dir("opaque", 0o755),
				File("opaque/old-1", 0o644, []byte("hidden by the opaque directory above\n")),
				File("opaque/old-2", 0o644, []byte("hidden too\n")),
				Dir("opaque/sub", 0o755),
				File("opaque/sub/old-3", 0o644, []byte("hidden too\n")),
				Dir("swap", 0o755),
				File("swap/inside", 0o644, []byte("swap is a directory\n")),
			},
		},
		&Layer{
			CreatedBy: "berth mkimage: whiteout, opaque directory, directory to file, cross-layer hard link",
			Entries: []Entry{
				Dir("data2", 0o755),
				Hardlink("data2/cross-hardlink", "data/a-original.txt"),
				Dir("etc", 0o755),
				Whiteout("etc", "removed-later"),
				Dir("opaque", 0o755),
				Opaque("opaque"),
				File("opaque/new", 0o644, []byte("the only file left in /opaque\n")),
				File("swap", 0o644, []byte("swap is a file now\n")),
			},
		},
		&Layer{
			CreatedBy: "berth mkimage: file back to directory",
			Entries: []Entry{
				Dir("swap", 0o755),
				File("swap/again", 0o644, []byte("swap is a directory again\n")),
			},
		},
	)
	return img, nil
}

// Random returns an image of n layers holding size bytes of incompressible
// pseudo-random data in all (one file per layer), for benchmarks. It needs
// no busybox.
func Random(n int, size int64, arch string) (*Image, error) {
	if n < 1 {
		return nil, fmt.Errorf("random image needs at least one layer, got %d", n)
	}
	if size < 0 {
		return nil, fmt.Errorf("random image size must not be negative, got %d", size)
	}
	img := &Image{Platform: Options{Architecture: arch}.platform(), Config: defaultConfig()}
	per := size / int64(n)
	for i := 0; i < n; i++ {
		s := per
		if i == n-1 {
			s = size - per*int64(n-1)
		}
		img.Layers = append(img.Layers, &Layer{
			CreatedBy: fmt.Sprintf("berth mkimage: random layer %d", i+1),
			Entries: []Entry{
				Dir("random", 0o755),
				RandomFile(fmt.Sprintf("random/layer-%d", i+1), 0o644, s, fmt.Sprintf("berth-random-%d", i+1)),
			},
		})
	}
	return img, nil
}
