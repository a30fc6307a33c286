package unpack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

var linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// handChain computes chain IDs as the OCI spec defines them, independently
// of the package: chain(1) = diffid(1), chain(n) = sha256(chain(n-1) + " " + diffid(n)).
func handChain(diffIDs []digest.Digest) []digest.Digest {
	var out []digest.Digest
	for i, d := range diffIDs {
		if i == 0 {
			out = append(out, d)
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out = append(out, digest.Digest("sha256:"+hex.EncodeToString(sum[:])))
	}
	return out
}

func TestChainIDs(t *testing.T) {
	diffIDs := []digest.Digest{diffIDOf("a"), diffIDOf("b"), diffIDOf("c")}
	got := ChainIDs(ocispec.Image{RootFS: ocispec.RootFS{DiffIDs: diffIDs}})
	if want := handChain(diffIDs); !slices.Equal(got, want) {
		t.Fatalf("ChainIDs = %v, want %v", got, want)
	}
	if diffIDs[1] != diffIDOf("b") {
		t.Errorf("ChainIDs changed the config's diff IDs")
	}
	if got := ChainIDs(ocispec.Image{}); len(got) != 0 {
		t.Errorf("ChainIDs of no layers = %v", got)
	}
}

type setup struct {
	cs *fakeContent
	a  *fakeApplier
	sn *fakeSnapshotter
}

func newSetup(rebase bool) *setup {
	cs := newFakeContent()
	a := newFakeApplier(cs)
	sn := newFakeSnapshotter(a, rebase)
	a.parentOf = func(key string) string {
		sn.mu.Lock()
		defer sn.mu.Unlock()
		return sn.snapshots[key].info.Parent
	}
	return &setup{cs: cs, a: a, sn: sn}
}

func (s *setup) unpack(t *testing.T, img images.Image, opts ...Opt) (digest.Digest, error) {
	t.Helper()
	return Unpack(context.Background(), s.cs, s.sn, s.a, img, append([]Opt{WithPlatform(platforms.Only(linuxAMD64))}, opts...)...)
}

func TestSequentialUnpacksInOrder(t *testing.T) {
	s := newSetup(false)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c")
	chain := handChain(ti.diffIDs)

	top, err := s.unpack(t, ti.img, WithSnapshotterName("fake"))
	if err != nil {
		t.Fatal(err)
	}
	if top != chain[2] {
		t.Errorf("Unpack returned %s, want the top chain ID %s", top, chain[2])
	}
	if got := s.a.callList(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("applied %v, want a, b, c", got)
	}
	want := []string{
		`commit ` + chain[0].String() + ` parent=""`,
		`commit ` + chain[1].String() + ` parent="` + chain[0].String() + `"`,
		`commit ` + chain[2].String() + ` parent="` + chain[1].String() + `"`,
	}
	if got := s.sn.entries("commit"); !slices.Equal(got, want) {
		t.Errorf("commits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Each layer was prepared on the one below, under an extract- key.
	for i, p := range s.sn.entries("prepare") {
		parent := ""
		if i > 0 {
			parent = chain[i-1].String()
		}
		if !strings.HasPrefix(p, "prepare extract-") || !strings.Contains(p, chain[i].String()+` parent="`+parent+`"`) {
			t.Errorf("prepare %d: %s", i, p)
		}
	}
	if got := s.sn.chain(top.String()); !slices.Equal(got, []string{"c", "b", "a"}) {
		t.Errorf("snapshot chain holds %v, want c, b, a", got)
	}
	if active := s.sn.byKind(snapshots.KindActive); len(active) != 0 {
		t.Errorf("active snapshots left: %v", active)
	}
	if got := s.cs.label(ti.config.Digest, "berth.gc.ref.snapshot.fake"); got != top.String() {
		t.Errorf("config label berth.gc.ref.snapshot.fake = %q, want %s", got, top)
	}
}

func TestNoSnapshotterNameNoLabel(t *testing.T) {
	s := newSetup(false)
	ti := s.cs.addImage("img", linuxAMD64, "a")
	if _, err := s.unpack(t, ti.img); err != nil {
		t.Fatal(err)
	}
	if l := s.cs.labels[ti.config.Digest]; len(l) != 0 {
		t.Errorf("labels set without a snapshotter name: %v", l)
	}
}

func TestSharedLayersUnpackOnce(t *testing.T) {
	for _, rebase := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "parallel"}[rebase], func(t *testing.T) {
			s := newSetup(rebase)
			base := s.cs.addImage("base", linuxAMD64, "a", "b")
			child := s.cs.addImage("child", linuxAMD64, "a", "b", "c", "d")
			if _, err := s.unpack(t, base.img, WithSnapshotterName("fake")); err != nil {
				t.Fatal(err)
			}
			before := len(s.sn.entries("prepare"))
			top, err := s.unpack(t, child.img, WithSnapshotterName("fake"))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.a.callList(); !slices.Equal(got[2:], []string{"c", "d"}) && !slices.Equal(got[2:], []string{"d", "c"}) || len(got) != 4 {
				t.Errorf("applied %v, want a and b once, then c and d", got)
			}
			if got := s.sn.chain(top.String()); !slices.Equal(got, []string{"d", "c", "b", "a"}) {
				t.Errorf("child's chain holds %v", got)
			}
			if n := len(s.sn.entries("prepare")) - before; n != 2 {
				t.Errorf("%d prepares for the child, want 2", n)
			}
			// Unpacking again prepares nothing but labels the config again.
			before = len(s.sn.entries("prepare"))
			s.cs.labels[base.config.Digest] = nil
			if _, err := s.unpack(t, base.img, WithSnapshotterName("fake")); err != nil {
				t.Fatal(err)
			}
			if n := len(s.sn.entries("prepare")) - before; n != 0 {
				t.Errorf("%d prepares for an image already unpacked", n)
			}
			if got := s.cs.label(base.config.Digest, "berth.gc.ref.snapshot.fake"); got != handChain(base.diffIDs)[1].String() {
				t.Errorf("label after a second unpack = %q", got)
			}
			// A third unpack finds the label in place and writes nothing.
			updates := s.cs.updates
			if _, err := s.unpack(t, base.img, WithSnapshotterName("fake")); err != nil {
				t.Fatal(err)
			}
			if n := s.cs.updates - updates; n != 0 {
				t.Errorf("%d content updates when the image is unpacked and labelled already", n)
			}
		})
	}
}

func TestDiffIDMismatchLeavesNothing(t *testing.T) {
	for _, rebase := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "parallel"}[rebase], func(t *testing.T) {
			s := newSetup(rebase)
			ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c")
			s.a.wrong["b"] = true
			_, err := s.unpack(t, ti.img, WithSnapshotterName("fake"))
			if err == nil {
				t.Fatal("Unpack succeeded")
			}
			if !strings.Contains(err.Error(), diffIDOf("b").String()) || !strings.Contains(err.Error(), digest.FromString("something else b").String()) {
				t.Errorf("error does not name both digests: %v", err)
			}
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("error kind: %v", err)
			}
			chain := handChain(ti.diffIDs)
			committed := s.sn.byKind(snapshots.KindCommitted)
			if slices.Contains(committed, chain[1].String()) || slices.Contains(committed, chain[2].String()) {
				t.Errorf("a layer that failed or sits on one was committed: %v", committed)
			}
			if active := s.sn.byKind(snapshots.KindActive); len(active) != 0 {
				t.Errorf("active snapshots left: %v", active)
			}
			if l := s.cs.labels[ti.config.Digest]; len(l) != 0 {
				t.Errorf("the config was labelled after a failure: %v", l)
			}
		})
	}
}

func TestApplyFailureInParallel(t *testing.T) {
	s := newSetup(true)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c", "d")
	s.a.fail["c"] = true
	s.a.delay = 10 * time.Millisecond
	_, err := s.unpack(t, ti.img, WithLimit(2))
	if err == nil || !strings.Contains(err.Error(), "corrupt gzip") {
		t.Fatalf("Unpack: %v, want the applier's error", err)
	}
	if got := s.sn.byKind(snapshots.KindActive); len(got) != 0 {
		t.Errorf("active snapshots left: %v", got)
	}
	// The layers below the failed one are good and stay (the caller's
	// lease decides); nothing at or above it is committed.
	chain := handChain(ti.diffIDs)
	committed := s.sn.byKind(snapshots.KindCommitted)
	slices.Sort(committed)
	if want := slices.Sorted(slices.Values([]string{chain[0].String(), chain[1].String()})); !slices.Equal(committed, want) {
		t.Errorf("committed %v, want the layers below the failure %v", committed, want)
	}
	// c was tried in parallel, then once more on its parent; d was not
	// tried again after c failed.
	calls := s.a.callList()
	if n := strings.Count(strings.Join(calls, ","), "c"); n != 2 {
		t.Errorf("layer c applied %d times (%v), want 2", n, calls)
	}
	if n := strings.Count(strings.Join(calls, ","), "d"); n != 1 {
		t.Errorf("layer d applied %d times (%v), want 1", n, calls)
	}
}

func TestParallelRetriesLayersThatNeedTheirParents(t *testing.T) {
	s := newSetup(true)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c", "d", "e")
	s.a.needsParent["c"] = true
	top, err := s.unpack(t, ti.img, WithLimit(5))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.sn.chain(top.String()); !slices.Equal(got, []string{"e", "d", "c", "b", "a"}) {
		t.Errorf("chain holds %v", got)
	}
	chain := handChain(ti.diffIDs)
	var want []string
	for i, c := range chain {
		parent := ""
		if i > 0 {
			parent = chain[i-1].String()
		}
		want = append(want, `commit `+c.String()+` parent="`+parent+`"`)
	}
	if got := s.sn.entries("commit"); !slices.Equal(got, want) {
		t.Errorf("commits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := s.sn.byKind(snapshots.KindActive); len(got) != 0 {
		t.Errorf("active snapshots left: %v", got)
	}
	// c, d and e were applied again, one by one, each on its parent.
	prepares := s.sn.entries("prepare")
	if len(prepares) != 8 {
		t.Fatalf("%d prepares, want 5 in parallel and 3 one by one: %v", len(prepares), prepares)
	}
	for i, p := range prepares[5:] {
		if !strings.Contains(p, `parent="`+chain[i+1].String()+`"`) {
			t.Errorf("retry %d: %s, want it on %s", i, p, chain[i+1])
		}
	}
}

func TestParallelCommitsInOrder(t *testing.T) {
	s := newSetup(true)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c", "d", "e")
	s.a.delay = 30 * time.Millisecond
	top, err := s.unpack(t, ti.img, WithLimit(3), WithSnapshotterName("fake"))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.a.maxInFlight.Load(); m < 2 || m > 3 {
		t.Errorf("%d layers applied at once, want 2 or 3 with a limit of 3", m)
	}
	for _, p := range s.sn.entries("prepare") {
		if !strings.Contains(p, `parent="" rebase="true"`) {
			t.Errorf("parallel prepare with a parent or without the rebase label: %s", p)
		}
	}
	chain := handChain(ti.diffIDs)
	var want []string
	for i, c := range chain {
		parent := ""
		if i > 0 {
			parent = chain[i-1].String()
		}
		want = append(want, `commit `+c.String()+` parent="`+parent+`"`)
	}
	if got := s.sn.entries("commit"); !slices.Equal(got, want) {
		t.Errorf("commits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := s.sn.chain(top.String()); !slices.Equal(got, []string{"e", "d", "c", "b", "a"}) {
		t.Errorf("chain holds %v", got)
	}
}

func TestParallelDefaultFollowsCapability(t *testing.T) {
	for _, tc := range []struct {
		rebase  bool
		opts    []Opt
		wantPar bool
	}{
		{rebase: true, wantPar: true},
		{rebase: false, wantPar: false},
		{rebase: true, opts: []Opt{WithParallel(false)}, wantPar: false},
	} {
		s := newSetup(tc.rebase)
		ti := s.cs.addImage("img", linuxAMD64, "a", "b")
		if _, err := s.unpack(t, ti.img, tc.opts...); err != nil {
			t.Fatal(err)
		}
		second := s.sn.entries("prepare")[1]
		if gotPar := strings.Contains(second, `parent=""`); gotPar != tc.wantPar {
			t.Errorf("rebase=%v opts=%d: second prepare %q, want parallel=%v", tc.rebase, len(tc.opts), second, tc.wantPar)
		}
	}
}

func TestParallelNeedsRebase(t *testing.T) {
	s := newSetup(false)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b")
	if _, err := s.unpack(t, ti.img, WithParallel(true)); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "rebase") {
		t.Errorf("parallel unpack without the rebase capability: %v", err)
	}
	if got := s.sn.entries("prepare"); len(got) != 0 {
		t.Errorf("snapshots prepared before the refusal: %v", got)
	}
}

func TestConcurrentCommitOfTheSameLayer(t *testing.T) {
	for _, rebase := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "parallel"}[rebase], func(t *testing.T) {
			s := newSetup(rebase)
			ti := s.cs.addImage("img", linuxAMD64, "a", "b", "c")
			chain := handChain(ti.diffIDs)
			// Another unpack commits layer b just before this one does.
			s.sn.beforeCommit = func(name string) {
				if name != chain[1].String() {
					return
				}
				s.sn.beforeCommit = nil
				s.sn.mu.Lock()
				s.sn.snapshots[name] = &fakeSnapshot{info: snapshots.Info{Kind: snapshots.KindCommitted, Name: name, Parent: chain[0].String()}, layer: "b (other)"}
				s.sn.mu.Unlock()
			}
			top, err := s.unpack(t, ti.img)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.sn.chain(top.String()); !slices.Equal(got, []string{"c", "b (other)", "a"}) {
				t.Errorf("chain holds %v", got)
			}
			if got := s.sn.byKind(snapshots.KindActive); len(got) != 0 {
				t.Errorf("active snapshots left: %v", got)
			}
		})
	}
}

func TestPlatformChoice(t *testing.T) {
	s := newSetup(false)
	amd := s.cs.addImage("", linuxAMD64, "amd-a")
	arm := s.cs.addImage("", ocispec.Platform{OS: "linux", Architecture: "arm64"}, "arm-a")
	amdDesc, armDesc := amd.img.Target, arm.img.Target
	amdDesc.Platform, armDesc.Platform = &linuxAMD64, &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{armDesc, amdDesc}}
	idx.SchemaVersion = 2
	img := images.Image{Name: "multi", Target: s.cs.addJSON(ocispec.MediaTypeImageIndex, idx)}

	top, err := Unpack(context.Background(), s.cs, s.sn, s.a, img, WithPlatform(platforms.Only(ocispec.Platform{OS: "linux", Architecture: "arm64"})))
	if err != nil {
		t.Fatal(err)
	}
	if top != diffIDOf("arm-a") || !slices.Equal(s.a.callList(), []string{"arm-a"}) {
		t.Errorf("unpacked %v to %s, want the arm64 layer", s.a.callList(), top)
	}
	_, err = Unpack(context.Background(), s.cs, s.sn, s.a, img, WithPlatform(platforms.Only(ocispec.Platform{OS: "linux", Architecture: "s390x"})))
	if !errors.Is(err, ErrNoPlatform) || !errdefs.IsNotFound(err) {
		t.Errorf("Unpack for a platform the index lacks: %v, want ErrNoPlatform", err)
	}
}

func TestBrokenImages(t *testing.T) {
	s := newSetup(false)
	ti := s.cs.addImage("img", linuxAMD64, "a", "b")
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ti.config, Layers: ti.layers[:1]}
	m.SchemaVersion = 2
	short := images.Image{Name: "short", Target: s.cs.addJSON(ocispec.MediaTypeImageManifest, m)}
	if _, err := s.unpack(t, short); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "1 layers but its config 2 diff_ids") {
		t.Errorf("manifest and config disagree: %v", err)
	}

	// A snapshot named like a layer's chain ID that is not committed.
	s.sn.snapshots[ti.diffIDs[0].String()] = &fakeSnapshot{info: snapshots.Info{Kind: snapshots.KindActive, Name: ti.diffIDs[0].String()}}
	one := s.cs.addImage("one", linuxAMD64, "a")
	if _, err := s.unpack(t, one.img); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "berth snapshot rm") {
		t.Errorf("active snapshot in the way: %v", err)
	}
}

func TestNoLayers(t *testing.T) {
	s := newSetup(false)
	ti := s.cs.addImage("empty", linuxAMD64)
	top, err := s.unpack(t, ti.img, WithSnapshotterName("fake"))
	if err != nil || top != "" {
		t.Fatalf("Unpack of an image without layers = %q, %v", top, err)
	}
}
