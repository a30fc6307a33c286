package integration

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/mount"
)

// tarNames lists the entry names of a tar.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		names = append(names, hdr.Name)
	}
}

func readHostFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("reading %s: %v", p, err)
	}
	return string(b)
}

func TestCpBothWays(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	d.must("run", "-d", "--name", "cpc", "busybox", "sleep", "60")
	h := t.TempDir()
	d.must("exec", "cpc", "sh", "-c", "mkdir -p /d/sub && echo one > /d/a && echo two > /d/sub/b && ln -s /etc /d/etclink && echo secret > /etc/secretfile && echo shm > /dev/shm/f")

	// Out of the container.
	d.must("cp", "cpc:/etc/passwd", h+"/")
	if got := readHostFile(t, filepath.Join(h, "passwd")); !strings.HasPrefix(got, "root:") {
		t.Errorf("cp cpc:/etc/passwd DIR/: %q", got)
	}
	_, errOut, _ := d.berth("cp", "cpc:/d", filepath.Join(h, "new"))
	if !strings.HasPrefix(errOut, "Successfully copied ") || !strings.HasSuffix(errOut, " to "+filepath.Join(h, "new")+"\n") {
		t.Errorf("cp's report: %q", errOut)
	}
	if got := readHostFile(t, filepath.Join(h, "new", "sub", "b")); got != "two\n" {
		t.Errorf("cp of a directory to a new path: sub/b = %q", got)
	}
	if l, err := os.Readlink(filepath.Join(h, "new", "etclink")); err != nil || l != "/etc" {
		t.Errorf("cp of a directory: the symbolic link is %q, %v; want it copied as a link to /etc", l, err)
	}
	os.Mkdir(filepath.Join(h, "into"), 0o755)
	d.must("cp", "cpc:/d", filepath.Join(h, "into"))
	if got := readHostFile(t, filepath.Join(h, "into", "d", "a")); got != "one\n" {
		t.Errorf("cp of a directory into a directory: d/a = %q", got)
	}
	os.Mkdir(filepath.Join(h, "contents"), 0o755)
	d.must("cp", "cpc:/d/.", filepath.Join(h, "contents"))
	if got := readHostFile(t, filepath.Join(h, "contents", "a")); got != "one\n" {
		t.Errorf("cp of SRC/. copies the contents: a = %q", got)
	}
	// In a tmpfs of the running container.
	d.must("cp", "cpc:/dev/shm/f", filepath.Join(h, "shm"))
	if got := readHostFile(t, filepath.Join(h, "shm")); got != "shm\n" {
		t.Errorf("cp from the container's /dev/shm tmpfs: %q", got)
	}
	// -L copies what the link points to, inside the container.
	d.must("cp", "-L", "cpc:/d/etclink", filepath.Join(h, "etc"))
	if got := readHostFile(t, filepath.Join(h, "etc", "secretfile")); got != "secret\n" {
		t.Errorf("cp -L of a link to /etc copied the wrong /etc: secretfile = %q", got)
	}
	// Docker's errors.
	os.WriteFile(filepath.Join(h, "file"), []byte("file"), 0o644)
	// clash holds a folder where the copy would put a file, and a file
	// where it would put a folder.
	os.MkdirAll(filepath.Join(h, "clash", "a"), 0o755)
	os.WriteFile(filepath.Join(h, "clash", "sub"), []byte("file"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cpc:/d", filepath.Join(h, "file")}, "cannot copy directory"},
		{[]string{"cpc:/d/a", filepath.Join(h, "missing") + "/"}, "no such directory"},
		{[]string{"cpc:/d/a/", h}, "not a directory"},
		{[]string{"cpc:/nope", h}, "Could not find the file /nope in container cpc"},
		{[]string{"cpc:/d/a", filepath.Join(h, "no", "parent")}, "does not exist"},
		{[]string{"cpc:/a", "cpc:/b"}, "copying between containers is not supported"},
		{[]string{"cpc:/d/a", filepath.Join(h, "clash")}, "cannot overwrite directory"},
		{[]string{"cpc:/d/sub", filepath.Join(h, "clash")}, "cannot overwrite non-directory"},
		{[]string{h, filepath.Join(h, "x")}, "must specify at least one container source"},
	} {
		if _, errOut, code := d.berth(append([]string{"cp"}, c.args...)...); code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("cp %v: exit %d, stderr %q; want 1 and %q", c.args, code, errOut, c.want)
		}
	}
	if got := readHostFile(t, filepath.Join(h, "file")); got != "file" {
		t.Errorf("a refused copy changed the destination file: %q", got)
	}

	// Into the container, owned by its root unless -a.
	in := filepath.Join(h, "in.txt")
	os.WriteFile(in, []byte("hello"), 0o640)
	os.Chown(in, 1234, 4321)
	d.must("cp", in, "cpc:/tmp/")
	if out := d.must("exec", "cpc", "stat", "-c", "%u:%g %a", "/tmp/in.txt"); out != "0:0 640\n" {
		t.Errorf("cp into the container: %q, want root's and mode 640", out)
	}
	d.must("cp", "-a", in, "cpc:/tmp/kept.txt")
	if out := d.must("exec", "cpc", "stat", "-c", "%u:%g", "/tmp/kept.txt"); out != "1234:4321\n" {
		t.Errorf("cp -a into the container: %q", out)
	}
	if out := d.must("exec", "cpc", "cat", "/tmp/kept.txt"); out != "hello" {
		t.Errorf("cp -a into the container: content %q", out)
	}
	d.must("cp", in, "cpc:/d/a") // over an existing file
	if out := d.must("exec", "cpc", "cat", "/d/a"); out != "hello" {
		t.Errorf("cp over a file in the container: %q", out)
	}

	// Tar streams: stdout and stdin.
	out, _, code := d.berth("cp", "cpc:/d", "-")
	if names := tarNames(t, []byte(out)); code != 0 || !slices.Contains(names, "d/") || !slices.Contains(names, "d/sub/b") {
		t.Errorf("cp cpc:/d -: exit %d, entries %v", code, names)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "t/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "t/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("tar"))
	tw.Close()
	if _, errOut, code := d.berthIn(buf.Bytes(), "cp", "-", "cpc:/tmp"); code != 0 {
		t.Errorf("cp - cpc:/tmp: exit %d, %s", code, errOut)
	}
	if out := d.must("exec", "cpc", "cat", "/tmp/t/x"); out != "tar" {
		t.Errorf("cp - cpc:/tmp: t/x = %q", out)
	}
	if _, errOut, code := d.berthIn(buf.Bytes(), "cp", "-", "cpc:/tmp/t/x"); code != 1 || !strings.Contains(errOut, "must be a directory") {
		t.Errorf("cp - onto a file: exit %d, %q", code, errOut)
	}

	// A paused container is seen through its process's root too.
	d.must("pause", "cpc")
	d.must("cp", "cpc:/dev/shm/f", filepath.Join(h, "paused"))
	d.must("unpause", "cpc")
	if got := readHostFile(t, filepath.Join(h, "paused")); got != "shm\n" {
		t.Errorf("cp from a paused container: %q", got)
	}

	// A stopped container: its snapshot is mounted.
	d.must("stop", "-t", "1", "cpc")
	d.must("cp", in, "cpc:/stopped.txt")
	d.must("cp", "cpc:/stopped.txt", filepath.Join(h, "back.txt"))
	if got := readHostFile(t, filepath.Join(h, "back.txt")); got != "hello" {
		t.Errorf("cp through a stopped container: %q", got)
	}
	d.must("start", "cpc")
	if out := d.must("exec", "cpc", "cat", "/stopped.txt", "/tmp/t/x"); out != "hellotar" {
		t.Errorf("files copied into the stopped container, after start: %q", out)
	}
	d.must("rm", "-f", "cpc")
}

// TestCpStaysInContainer tries to leave the container's root with links and
// ".." and checks a canary file on the host each time.
func TestCpStaysInContainer(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	h := t.TempDir()
	canary := filepath.Join(h, "canary")
	if err := os.WriteFile(canary, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must("run", "-d", "--name", "esc", "busybox", "sleep", "60")
	d.must("exec", "esc", "sh", "-c", "mkdir -p /x && ln -s "+h+" /x/hostdir && ln -s "+canary+" /x/canarylink && ln -s ../../../../../../.. /x/up && ln -s /etc /x/etc && echo in > /etc/only-here")
	payload := filepath.Join(h, "payload")
	os.WriteFile(payload, []byte("evil"), 0o644)

	// Reads resolve inside the container: the host folder is not there.
	if _, errOut, code := d.berth("cp", "esc:/x/hostdir/canary", filepath.Join(h, "out1")); code != 1 || !strings.Contains(errOut, "Could not find the file /x/hostdir/canary in container esc") {
		t.Errorf("cp through a link to a host folder: exit %d, %q", code, errOut)
	}
	if _, errOut, code := d.berth("cp", "-L", "esc:/x/canarylink", filepath.Join(h, "out2")); code != 1 || !strings.Contains(errOut, "Could not find") {
		t.Errorf("cp -L of a link to a host file: exit %d, %q", code, errOut)
	}
	d.must("cp", "esc:/x/up/etc/only-here", filepath.Join(h, "out3"))
	if got := readHostFile(t, filepath.Join(h, "out3")); got != "in\n" {
		t.Errorf("cp through ../../.. read %q, want the container's file", got)
	}
	d.must("cp", "esc:../../../../etc/only-here", filepath.Join(h, "out4"))
	if got := readHostFile(t, filepath.Join(h, "out4")); got != "in\n" {
		t.Errorf("cp of a path with ../ read %q, want the container's file", got)
	}
	if _, err := os.Stat(filepath.Join(h, "out1")); err == nil {
		t.Error("a refused copy left a file")
	}
	for i, run := range []func(){
		func() { d.berth("cp", payload, "esc:/x/hostdir/canary") },
		func() { d.berth("cp", payload, "esc:/x/canarylink") },
		func() { d.berth("cp", payload, "esc:/x/up"+canary) },
		func() { d.berth("cp", payload, "esc:../../../../"+canary) },
		func() { d.berth("cp", "-L", payload, "esc:/x/canarylink") },
		func() {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: h})
			tw.WriteHeader(&tar.Header{Name: "l/canary", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4})
			tw.Write([]byte("evil"))
			tw.WriteHeader(&tar.Header{Name: "../../../../../.." + canary, Typeflag: tar.TypeReg, Mode: 0o644, Size: 4})
			tw.Write([]byte("evil"))
			tw.Close()
			d.berthIn(buf.Bytes(), "cp", "-", "esc:/tmp")
		},
	} {
		run()
		if got := readHostFile(t, canary); got != "host" {
			t.Fatalf("escape attempt %d changed the host canary: %q", i, got)
		}
		if fi, err := os.Lstat(canary); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("escape attempt %d replaced the host canary: %v %v", i, fi, err)
		}
	}
	// The tar above made the folder and the canary inside the container.
	d.must("cp", "esc:/x/hostdir/canary", filepath.Join(h, "out5"))
	if got := readHostFile(t, filepath.Join(h, "out5")); got != "evil" {
		t.Errorf("cp through a link to a folder the container made: %q, want the container's file", got)
	}
	d.must("rm", "-f", "esc")
}

func TestExport(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	h := t.TempDir()
	d.must("run", "-d", "--name", "exp", "busybox", "sleep", "60")
	d.must("exec", "exp", "sh", "-c", "echo x > /exported && rm /bin/ls && echo shm > /dev/shm/f")
	out := filepath.Join(h, "fs.tar")
	d.must("export", "-o", out, "exp")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, b)
	for _, want := range []string{"exported", "bin/busybox", "etc/passwd"} {
		if !slices.Contains(names, want) {
			t.Errorf("export of a running container lacks %s", want)
		}
	}
	for _, unwanted := range []string{"bin/ls", "dev/shm/f", "proc/1/"} {
		if slices.Contains(names, unwanted) {
			t.Errorf("export of a running container holds %s", unwanted)
		}
	}
	// The container still writes where it did.
	d.must("exec", "exp", "sh", "-c", "echo y > /after")
	d.must("stop", "-t", "1", "exp")
	stdout, errOut, code := d.berth("export", "exp")
	if names := tarNames(t, []byte(stdout)); code != 0 || !slices.Contains(names, "after") || !slices.Contains(names, "exported") {
		t.Errorf("export of a stopped container to stdout: exit %d, %q, %d entries", code, errOut, len(names))
	}
	// A reader that goes away (a closed pipe) stops the export, which
	// unmounts the snapshot before berth exits.
	sh := exec.Command("sh", "-c", `"$0" --address "$1" export exp | head -c 1024 >/dev/null`, filepath.Join(env.bin, "berth"), d.address)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("export into a closed pipe: %v: %s", err, out)
	}
	for _, m := range mountsUnder(t, os.TempDir()) {
		if strings.Contains(m, "berth-mount-") {
			t.Errorf("export into a closed pipe left %s mounted", m)
			mount.Unmount(m)
		}
	}
	if _, errOut, code := d.berth("export", "nope"); code != 1 || !strings.Contains(errOut, "No such container: nope") {
		t.Errorf("export of an unknown container: exit %d, %q", code, errOut)
	}
	d.must("rm", "exp")
}
