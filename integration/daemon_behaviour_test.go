package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGRPCurl lists berthd's services and calls one with grpcurl, as a user
// without berth's client would.
func TestGRPCurl(t *testing.T) {
	if env.grpcurl == "" {
		t.Skip("GRPCURL is not set (run 'make integration')")
	}
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))

	out := grpcurl(t, "-plaintext", "-unix", d.address, "list")
	for _, svc := range []string{"berth.content.v1.Content", "berth.images.v1.Images", "berth.leases.v1.Leases",
		"berth.namespaces.v1.Namespaces", "berth.events.v1.Events", "berth.introspection.v1.Introspection",
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(out, svc) {
			t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
		}
	}
	out = grpcurl(t, "-plaintext", "-unix", "-H", "berth-namespace: default", d.address, "berth.content.v1.Content/List")
	for _, blob := range d.blobs() {
		if !strings.Contains(out, "sha256:"+blob) {
			t.Errorf("Content/List lacks blob %s", blob)
		}
	}
	out = grpcurl(t, "-plaintext", "-unix", "-H", "berth-namespace: default", d.address, "berth.images.v1.Images/List")
	if !strings.Contains(out, "docker.io/library/busybox:latest") {
		t.Errorf("Images/List lacks busybox:\n%s", out)
	}
}

func grpcurl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(env.grpcurl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestSecondDaemonRefused checks the lock on the root folder.
func TestSecondDaemonRefused(t *testing.T) {
	d := startDaemon(t)
	other := filepath.Join(t.TempDir(), "other.sock")
	out, err := exec.Command(filepath.Join(env.bin, "berthd"), "--root", d.root, "--state", d.state,
		"--address", other, "--config", "").CombinedOutput()
	if err == nil {
		t.Fatalf("a second berthd on the same root started")
	}
	if !strings.Contains(string(out), "another berthd") {
		t.Errorf("refusal does not explain itself: %s", out)
	}
	// The first one still serves.
	d.must("version")
}

// TestRestartKeepsImages stops berthd, starts it again on the same root, and
// finds everything; the socket is gone while it is down.
func TestRestartKeepsImages(t *testing.T) {
	d := startDaemon(t)
	d.must("load", "-i", testImage("layers-docker.tar"))
	before := d.must("images", "--no-trunc")
	d.stop()
	if _, err := os.Stat(d.address); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
	d.start()
	if after := d.must("images", "--no-trunc"); after != before {
		t.Errorf("images after restart:\n%s\nwant:\n%s", after, before)
	}
}

// TestCrashDuringLoad kills berthd in the middle of a load and checks that
// the next start serves, shows no half-written blob and no new image.
func TestCrashDuringLoad(t *testing.T) {
	d := startDaemon(t)
	big := filepath.Join(t.TempDir(), "big.tar")
	if out, err := exec.Command(filepath.Join(env.bin, "mkimage"), "random", "-layers", "4", "-size", "400000000",
		"-format", "docker", "-name", "big:latest", "-o", big).CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, out)
	}
	load := exec.Command(filepath.Join(env.bin, "berth"), "--address", d.address, "load", "-i", big)
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until data is flowing, then kill the daemon.
	deadline := time.Now().Add(30 * time.Second)
	for len(d.ingests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.cmd = nil
	if err := load.Wait(); err == nil {
		t.Errorf("load succeeded although berthd was killed")
	}

	d.start()
	if got := d.must("images", "-q"); got != "" {
		t.Errorf("a half-loaded image is listed: %q", got)
	}
	for _, blob := range d.blobs() {
		data, err := os.ReadFile(filepath.Join(d.root, "content", "blobs", "sha256", blob))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != blob {
			t.Errorf("blob %s does not match its digest", blob)
		}
	}
	// The store still takes the same image.
	d.must("load", "-i", big)
}

// TestNamespacesSeparate loads into one namespace and checks the others do not see it.
func TestNamespacesSeparate(t *testing.T) {
	d := startDaemon(t)
	d.must("-n", "team", "load", "-i", testImage("busybox-docker.tar"))
	if got := d.must("images", "-q"); got != "" {
		t.Errorf("default namespace sees team's image: %q", got)
	}
	if got := d.must("--namespace", "team", "images", "-q"); got == "" {
		t.Errorf("team's image is not listed in team")
	}
	if out := d.must("namespace", "ls"); !strings.Contains(out, "team") {
		t.Errorf("namespace ls: %q", out)
	}
	if _, errOut, code := d.berth("namespace", "rm", "team"); code == 0 {
		t.Errorf("removing a namespace that holds an image succeeded")
	} else if !strings.Contains(errOut, "team") {
		t.Errorf("refusal does not name the namespace: %q", errOut)
	}
	d.must("-n", "team", "rmi", "busybox")
	d.must("namespace", "rm", "team")
	if out := d.must("namespace", "ls"); strings.Contains(out, "team") {
		t.Errorf("namespace still listed after rm: %q", out)
	}
}

// TestContentCommands reads and removes blobs through 'berth content'.
func TestContentCommands(t *testing.T) {
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	list := d.must("content", "ls", "-q")
	blobs := d.blobs()
	if len(blobs) == 0 {
		t.Fatal("no blobs after load")
	}
	for _, b := range blobs {
		if !strings.Contains(list, "sha256:"+b) {
			t.Errorf("content ls lacks %s", b)
		}
	}
	data := d.must("content", "get", "sha256:"+blobs[0])
	if sum := sha256.Sum256([]byte(data)); hex.EncodeToString(sum[:]) != blobs[0] {
		t.Errorf("content get returned other bytes")
	}
	if _, errOut, code := d.berth("content", "get", "sha256:"+strings.Repeat("0", 64)); code == 0 || !strings.Contains(errOut, "No such blob") {
		t.Errorf("content get of a missing blob: %d %q", code, errOut)
	}
}

// TestMetrics scrapes berthd's Prometheus endpoint.
func TestMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := startDaemon(t, "--metrics-address", addr)
	d.must("images")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, metric := range []string{"grpc_server_handled_total", "berth_build_info"} {
		if !strings.Contains(string(body), metric) {
			t.Errorf("/metrics lacks %s", metric)
		}
	}
}
