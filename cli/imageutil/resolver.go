package imageutil

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/platforms"
	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/reference"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// DefaultParallel is how many targets Resolver reads at once.
const DefaultParallel = 32

// Image is one image record and the details of its target.
type Image struct {
	images.Image
	// Details is nil when Err is set; records that share a target share it.
	Details *Details
	// Err says why the target could not be read (a missing blob, say).
	Err error
}

// ID is the IMAGE ID, or "" when the target could not be read.
func (i Image) ID() digest.Digest {
	if i.Details == nil {
		return ""
	}
	return i.Details.ID()
}

// Dangling reports whether the record has no name: its Name is a bare digest.
func (i Image) Dangling() bool { return IsDangling(i.Name) }

// IsDangling reports whether an image record name is a bare digest or empty:
// the record only keeps an unnamed image alive.
func IsDangling(name string) bool { return name == "" || reference.IsDigest(name) }

// Resolver reads image records and their targets for one command. It reads
// each distinct target once, however many names point at it and however
// often it is asked, so it must not outlive the command.
type Resolver struct {
	images   images.Store
	content  content.Provider
	platform platforms.MatchComparer
	// platformKey names platform in LabelSummary values.
	platformKey string
	parallel    int

	mu      sync.Mutex
	targets map[digest.Digest]*pending
	all     []Image
	listed  bool
}

type pending struct {
	done    chan struct{}
	details *Details
	err     error
}

// Opt configures a Resolver.
type Opt func(*Resolver)

// WithPlatform makes the resolver pick manifests of indexes for p instead of
// the current platform.
func WithPlatform(p ocispec.Platform) Opt {
	return func(r *Resolver) {
		r.platform, r.platformKey = platforms.Only(p), platforms.Format(p)
	}
}

// WithParallel sets how many targets are read at once.
func WithParallel(n int) Opt {
	return func(r *Resolver) {
		if n > 0 {
			r.parallel = n
		}
	}
}

// NewResolver returns a resolver over the image records of is and the blobs
// of cs.
func NewResolver(is images.Store, cs content.Provider, opts ...Opt) *Resolver {
	r := &Resolver{
		images:      is,
		content:     cs,
		platform:    platforms.Default(),
		platformKey: platforms.DefaultString(),
		parallel:    DefaultParallel,
		targets:     map[digest.Digest]*pending{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Details returns the details of target, reading them at most once.
func (r *Resolver) Details(ctx context.Context, target ocispec.Descriptor) (*Details, error) {
	r.mu.Lock()
	p, ok := r.targets[target.Digest]
	if !ok {
		p = &pending{done: make(chan struct{})}
		r.targets[target.Digest] = p
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-p.done:
			return p.details, p.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.details, p.err = readDetails(ctx, r.content, r.platform, target)
	close(p.done)
	return p.details, p.err
}

// Image returns rec with its details, from its LabelSummary when that is
// current, else from the blobs; a target that cannot be read sets Err.
func (r *Resolver) Image(ctx context.Context, rec images.Image) Image {
	if d, ok := r.fromSummary(rec); ok {
		return Image{Image: rec, Details: d}
	}
	d, err := r.Details(ctx, rec.Target)
	return Image{Image: rec, Details: d, Err: err}
}

// fromSummary returns the details that rec's LabelSummary gives, sharing
// them with other records of the same target.
func (r *Resolver) fromSummary(rec images.Image) (*Details, bool) {
	v, ok := rec.Labels[LabelSummary]
	if !ok {
		return nil, false
	}
	d, ok := parseSummary(v, rec.Target, r.platformKey)
	if !ok {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, known := r.targets[rec.Target.Digest]; known {
		select {
		case <-p.done:
			if p.err == nil {
				return p.details, true
			}
		default:
		}
		return d, true
	}
	p := &pending{done: make(chan struct{}), details: d}
	close(p.done)
	r.targets[rec.Target.Digest] = p
	return d, true
}

// SummaryLabels returns the labels that let later listings show an image
// record pointing at target without reading blobs; d are target's details.
func (r *Resolver) SummaryLabels(target ocispec.Descriptor, d *Details) map[string]string {
	if summaryPlatform(target, r.platformKey) == "" {
		return nil
	}
	return map[string]string{LabelSummary: summaryValue(target, r.platformKey, d)}
}

// List returns every image record of the namespace with its details. The
// result is cached: later calls (an ID lookup after a listing) cost
// nothing.
//
// Records that load and tag made carry their details in LabelSummary, so a
// listing of them is one call. Targets of records without a current summary
// (made through the API by other clients) are read, each distinct one once,
// concurrently; a listing never writes.
func (r *Resolver) List(ctx context.Context) ([]Image, error) {
	r.mu.Lock()
	if r.listed {
		defer r.mu.Unlock()
		return r.all, nil
	}
	r.mu.Unlock()

	recs, err := r.images.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	all, err := r.withDetails(ctx, recs)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.all, r.listed = all, true
	r.mu.Unlock()
	return all, nil
}

// withDetails returns recs with their details.
func (r *Resolver) withDetails(ctx context.Context, recs []images.Image) ([]Image, error) {
	out := make([]Image, len(recs))
	var missing []int
	for i, rec := range recs {
		if d, ok := r.fromSummary(rec); ok {
			out[i] = Image{Image: rec, Details: d}
		} else {
			missing = append(missing, i)
		}
	}
	// Read each distinct target once, r.parallel at a time.
	var distinct []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, i := range missing {
		if t := recs[i].Target; !seen[t.Digest] {
			seen[t.Digest] = true
			distinct = append(distinct, t)
		}
	}
	r.each(len(distinct), func(i int) { r.Details(ctx, distinct[i]) })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, i := range missing {
		d, err := r.Details(ctx, recs[i].Target)
		out[i] = Image{Image: recs[i], Details: d, Err: err}
	}
	return out, nil
}

// each calls fn(0..n-1), r.parallel at a time.
func (r *Resolver) each(n int, fn func(i int)) {
	sem := make(chan struct{}, r.parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// LoadConfig returns the config of d, reading it when d came from a
// summary label.
func (r *Resolver) LoadConfig(ctx context.Context, d *Details) (*ocispec.Image, error) {
	if cfg := d.Config(); cfg != nil {
		return cfg, nil
	}
	cfg, err := readConfig(ctx, r.content, d)
	if err != nil {
		return nil, err
	}
	d.setConfig(cfg)
	return cfg, nil
}

// LoadConfigs reads the configs of imgs that were not read yet, r.parallel
// at a time; an image whose config cannot be read gets Err.
func (r *Resolver) LoadConfigs(ctx context.Context, imgs []Image) {
	r.each(len(imgs), func(i int) {
		if imgs[i].Details == nil {
			return
		}
		if _, err := r.LoadConfig(ctx, imgs[i].Details); err != nil {
			imgs[i].Err = err
		}
	})
}

// By tells how an argument named an image.
type By int

const (
	// ByName: the argument is the name of one image record.
	ByName By = iota
	// ByID: the argument is an IMAGE ID or a unique prefix of one; the match
	// holds every record of that image.
	ByID
	// ByDigest: the argument is REPOSITORY@DIGEST for a record of that
	// repository whose target has that digest.
	ByDigest
)

// Match is what a user's argument names.
type Match struct {
	Arg    string
	By     By
	Images []Image
}

// ID is the IMAGE ID of the match ("" when unreadable).
func (m Match) ID() digest.Digest {
	for _, i := range m.Images {
		if id := i.ID(); id != "" {
			return id
		}
	}
	return ""
}

// Resolve returns the image records that arg names, as Docker reads an
// image argument: a name ("busybox", "busybox:1.36", a record named by a
// digest), an IMAGE ID or a unique prefix of one (with or without
// "sha256:"), or REPOSITORY@DIGEST. A name wins over an ID prefix that is
// also a valid name ("abc123"), as in Docker.
func (r *Resolver) Resolve(ctx context.Context, arg string) (Match, error) {
	if arg == "" {
		return Match{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "image name or ID must not be empty")
	}
	m := Match{Arg: arg}

	name, nameErr := recordName(arg)
	if nameErr == nil {
		rec, err := r.images.Get(ctx, name)
		switch {
		case err == nil:
			m.By, m.Images = ByName, []Image{r.Image(ctx, rec)}
			return m, nil
		case !errdefs.IsNotFound(err):
			return m, fmt.Errorf("looking up image %q: %w", arg, err)
		}
	}

	if reference.IsIDPrefix(strings.ToLower(arg)) {
		return r.resolveID(ctx, m)
	}
	if nameErr != nil {
		return m, nameErr
	}
	if named, err := distref.ParseNormalizedNamed(name); err == nil {
		if canonical, ok := named.(distref.Canonical); ok {
			return r.resolveDigest(ctx, m, canonical)
		}
	}
	return m, NotFound(arg)
}

// recordName returns the name an image record for arg would have: a bare
// digest names the record of an unnamed image.
func recordName(arg string) (string, error) {
	if reference.IsDigest(arg) {
		return arg, nil
	}
	return reference.Normalize(arg)
}

func (r *Resolver) resolveID(ctx context.Context, m Match) (Match, error) {
	all, err := r.List(ctx)
	if err != nil {
		return m, err
	}
	prefix := strings.TrimPrefix(strings.ToLower(m.Arg), "sha256:")
	var ids []digest.Digest
	for _, img := range all {
		id := img.ID()
		if id != "" && strings.HasPrefix(id.Encoded(), prefix) && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 0:
		return m, NotFound(m.Arg)
	case 1:
	default:
		slices.Sort(ids)
		short := make([]string, len(ids))
		for i, id := range ids {
			short[i] = id.Encoded()[:min(len(id.Encoded()), max(12, len(prefix)+4))]
		}
		return m, errdefs.Errorf(errdefs.ErrInvalidArgument, "image ID prefix %q is ambiguous: it matches %s: give more characters",
			m.Arg, strings.Join(short, ", "))
	}
	m.By = ByID
	for _, img := range all {
		if img.ID() == ids[0] {
			m.Images = append(m.Images, img)
		}
	}
	slices.SortFunc(m.Images, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return m, nil
}

// resolveDigest finds the records of ref's repository whose target has
// ref's digest: Docker's "busybox@sha256:..." names an image by the digest
// of its manifest (or index) in its repository.
func (r *Resolver) resolveDigest(ctx context.Context, m Match, ref distref.Canonical) (Match, error) {
	recs, err := r.images.List(ctx, "target.digest=="+ref.Digest().String())
	if err != nil {
		return m, fmt.Errorf("listing images: %w", err)
	}
	var same []images.Image
	for _, rec := range recs {
		if named, err := distref.ParseNormalizedNamed(rec.Name); err == nil && named.Name() == ref.Name() {
			same = append(same, rec)
		}
	}
	if len(same) == 0 {
		return m, NotFound(m.Arg)
	}
	imgs, err := r.withDetails(ctx, same)
	if err != nil {
		return m, err
	}
	slices.SortFunc(imgs, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	m.By, m.Images = ByDigest, imgs
	return m, nil
}

// NotFound is Docker's error for an image argument that names nothing.
func NotFound(arg string) error {
	return errdefs.Errorf(errdefs.ErrNotFound, "No such image: %s", arg)
}
