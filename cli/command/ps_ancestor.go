package command

import (
	"context"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/berth-engine/berth/cli/imageutil"
)

// ancestry answers ps's ancestor filter, as Docker's: a container matches
// an image when it was created from it or from an image built on it (whose
// layers start with all of its layers). It reads each image once.
type ancestry struct {
	resolver *imageutil.Resolver
	images   map[string]*imageLayers // by name or argument; nil: unknown
}

// imageLayers is an image's ID and its layers' diff IDs.
type imageLayers struct {
	id      digest.Digest
	diffIDs []digest.Digest
}

func newAncestry(r *imageutil.Resolver) *ancestry {
	return &ancestry{resolver: r, images: map[string]*imageLayers{}}
}

// layersOf returns the image ref names (a name, an ID or a prefix), or nil
// when it names none (it may have been removed).
func (a *ancestry) layersOf(ctx context.Context, ref string) *imageLayers {
	if l, ok := a.images[ref]; ok {
		return l
	}
	var l *imageLayers
	if m, err := a.resolver.Resolve(ctx, ref); err == nil {
		for _, img := range m.Images {
			if img.Details == nil {
				continue
			}
			cfg, err := a.resolver.LoadConfig(ctx, img.Details)
			if err != nil {
				continue
			}
			l = &imageLayers{id: img.ID(), diffIDs: cfg.RootFS.DiffIDs}
			break
		}
	}
	a.images[ref] = l
	return l
}

// descends reports whether the image named image is ancestor, or was
// built on it.
func (a *ancestry) descends(ctx context.Context, image, ancestor string) bool {
	anc, img := a.layersOf(ctx, ancestor), a.layersOf(ctx, image)
	if anc == nil || img == nil {
		return false
	}
	if anc.id == img.id {
		return true
	}
	n := len(anc.diffIDs)
	return n > 0 && len(img.diffIDs) > n && slices.Equal(img.diffIDs[:n], anc.diffIDs)
}
