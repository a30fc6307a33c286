package layer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

// canary is a directory outside the root that no layer may touch.
type canary struct {
	dir, file string
	before    map[string]fileState
	mode      os.FileMode
}

func newCanary(t *testing.T) *canary {
	c := &canary{dir: t.TempDir()}
	c.file = filepath.Join(c.dir, "canary")
	if err := os.WriteFile(c.file, []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(c.dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.before = treeState(t, c.dir)
	fi, _ := os.Stat(c.dir)
	c.mode = fi.Mode()
	return c
}

func (c *canary) check(t *testing.T) {
	t.Helper()
	if d := diffStates(c.before, treeState(t, c.dir)); d != "" {
		t.Errorf("the layer changed a directory outside the root:\n%s", d)
	}
	if fi, _ := os.Stat(c.dir); fi.Mode() != c.mode {
		t.Errorf("the layer changed the mode of a directory outside the root: %v", fi.Mode())
	}
	if st := lstat(t, c.file); st.Nlink != 1 {
		t.Errorf("the layer linked to a file outside the root: %d links", st.Nlink)
	}
}

func TestApplyStaysInRoot(t *testing.T) {
	climb := strings.Repeat("../", 20)
	for _, tc := range []struct {
		name    string
		entries func(c *canary) []ent
		// offender is the entry the error must name; "" when the layer is
		// contained without error, and then inside, if set, is the path
		// (relative to the root) where the escaping write must land.
		offender string
		inside   func(c *canary) string
	}{{
		name:     "dot-dot name",
		entries:  func(c *canary) []ent { return []ent{fileEnt("../escape", 0o644, "x")} },
		offender: "../escape",
	}, {
		name:     "dot-dot inside a name",
		entries:  func(c *canary) []ent { return []ent{dirEnt("a", 0o755), fileEnt("a/../../escape", 0o644, "x")} },
		offender: "a/../../escape",
	}, {
		name:     "dot-dot directory",
		entries:  func(c *canary) []ent { return []ent{dirEnt("../../escape", 0o777)} },
		offender: "../../escape/",
	}, {
		name: "absolute symlink followed",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("evil", c.dir), fileEnt("evil/pwned", 0o644, "x")}
		},
		inside: func(c *canary) string { return filepath.Join(c.dir, "pwned") },
	}, {
		name: "relative symlink climbing",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("evil", climb+c.dir), fileEnt("evil/pwned", 0o644, "x")}
		},
		inside: func(c *canary) string { return filepath.Join(c.dir, "pwned") },
	}, {
		name: "symlink swapped for a directory",
		entries: func(c *canary) []ent {
			return []ent{
				dirEnt("d", 0o755), fileEnt("d/ok", 0o644, "x"),
				symlinkEnt("d", c.dir),
				fileEnt("d/pwned", 0o644, "x"), dirEnt("d/sub", 0o777), fileEnt("d/sub/pwned", 0o644, "x"),
			}
		},
		inside: func(c *canary) string { return filepath.Join(c.dir, "sub/pwned") },
	}, {
		name: "symlink swapped for a directory in a later layer",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("d", c.dir), fileEnt("d/canary", 0o600, "overwritten")}
		},
		inside: func(c *canary) string { return filepath.Join(c.dir, "canary") },
	}, {
		name:     "hard link climbing out",
		entries:  func(c *canary) []ent { return []ent{hardlinkEnt("x", climb+c.file)} },
		offender: "x",
	}, {
		name:     "hard link to an absolute path outside",
		entries:  func(c *canary) []ent { return []ent{hardlinkEnt("x", c.file)} },
		offender: "x",
	}, {
		name: "hard link through a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("l", c.dir), hardlinkEnt("x", "l/canary")}
		},
		offender: "x",
	}, {
		name: "whiteout through a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("l", c.dir), whiteoutEnt("l", "canary"), whiteoutEnt("l", "sub")}
		},
	}, {
		name: "opaque directory through a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("l", c.dir), opaqueEnt("l")}
		},
	}, {
		name: "file over a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("f", c.file), fileEnt("f", 0o777, "not through the link")}
		},
	}, {
		name: "hard link over a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("f", c.file), fileEnt("g", 0o644, "g"), hardlinkEnt("f", "g")}
		},
	}, {
		name: "directory over a symlink",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("d", c.dir), dirEnt("d", 0o700)}
		},
	}, {
		// Under the overlay run, lowerlink is a lower layer's link to "/".
		name: "symlink of a lower layer",
		entries: func(c *canary) []ent {
			return []ent{fileEnt("lowerlink"+c.dir+"/pwned", 0o644, "x"), dirEnt("lowerlink"+c.dir+"/sub", 0o777)}
		},
	}, {
		name: "symlink loop",
		entries: func(c *canary) []ent {
			return []ent{symlinkEnt("loop", "loop"), fileEnt("loop/x", 0o644, "x")}
		},
		offender: "loop/x",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			resolversAndOverlay(t, func(t *testing.T, opts ...ApplyOpt) {
				c := newCanary(t)
				root := t.TempDir()
				_, err := Apply(context.Background(), root, bytes.NewReader(mkTar(t, tc.entries(c)...)), opts...)
				c.check(t)
				switch {
				case tc.offender != "":
					if err == nil || !strings.Contains(err.Error(), `"`+tc.offender+`"`) {
						t.Fatalf("got %v, want an error naming entry %q", err, tc.offender)
					}
					if tc.name != "symlink loop" && !errdefs.IsInvalidArgument(err) {
						t.Errorf("got %v, want ErrInvalidArgument", err)
					}
				case err != nil:
					t.Fatalf("Apply: %v", err)
				case tc.inside != nil:
					if p := filepath.Join(root, tc.inside(c)); !exists(p) {
						t.Errorf("the write through the link did not land inside the root at %s", p)
					}
				}
			})
		})
	}
}

// resolversAndOverlay runs f as resolvers does, and once more applying to
// an overlay upper directory over a lower layer (as root: whiteouts are
// devices there).
func resolversAndOverlay(t *testing.T, f func(t *testing.T, opts ...ApplyOpt)) {
	resolvers(t, f)
	t.Run("overlay", func(t *testing.T) {
		needRoot(t)
		lower := t.TempDir()
		apply(t, lower, mkTar(t, dirEnt("d", 0o755), fileEnt("d/lower", 0o644, "x"), symlinkEnt("lowerlink", "/")))
		f(t, WithOverlayWhiteouts(), WithParents([]string{lower}))
	})
}
