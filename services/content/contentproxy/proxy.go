// Package contentproxy implements content.Store over the
// berth.content.v1.Content gRPC API, so that code written against the
// interface works the same against a store in another process.
package contentproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	"github.com/berth-engine/berth/services/content"
)

type proxyStore struct {
	client contentv1.ContentClient
}

// NewStore returns a content.Store that calls c.
func NewStore(c contentv1.ContentClient) content.Store {
	return &proxyStore{client: c}
}

func (p *proxyStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	resp, err := p.client.Info(ctx, &contentv1.InfoRequest{Digest: dgst.String()})
	if err != nil {
		return content.Info{}, errdefs.FromGRPC(err)
	}
	return infoFromProto(resp.GetInfo())
}

func (p *proxyStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	req := &contentv1.UpdateRequest{
		Info: &contentv1.Info{Digest: info.Digest.String(), Labels: info.Labels},
	}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := p.client.Update(ctx, req)
	if err != nil {
		return content.Info{}, errdefs.FromGRPC(err)
	}
	return infoFromProto(resp.GetInfo())
}

func (p *proxyStore) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	// Stop the stream when fn returns early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.client.List(ctx, &contentv1.ListContentRequest{Filters: filters})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return errdefs.FromGRPC(err)
		}
		for _, pi := range resp.GetInfo() {
			info, err := infoFromProto(pi)
			if err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
}

func (p *proxyStore) Delete(ctx context.Context, dgst digest.Digest) error {
	if _, err := p.client.Delete(ctx, &contentv1.DeleteContentRequest{Digest: dgst.String()}); err != nil {
		return errdefs.FromGRPC(err)
	}
	return nil
}

func (p *proxyStore) Status(ctx context.Context, ref string) (content.Status, error) {
	resp, err := p.client.Status(ctx, &contentv1.StatusRequest{Ref: ref})
	if err != nil {
		return content.Status{}, errdefs.FromGRPC(err)
	}
	return statusFromProto(resp.GetStatus()), nil
}

func (p *proxyStore) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	resp, err := p.client.ListStatuses(ctx, &contentv1.ListStatusesRequest{Filters: filters})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]content.Status, 0, len(resp.GetStatuses()))
	for _, st := range resp.GetStatuses() {
		out = append(out, statusFromProto(st))
	}
	return out, nil
}

func (p *proxyStore) Abort(ctx context.Context, ref string) error {
	if _, err := p.client.Abort(ctx, &contentv1.AbortRequest{Ref: ref}); err != nil {
		return errdefs.FromGRPC(err)
	}
	return nil
}

func infoFromProto(pi *contentv1.Info) (content.Info, error) {
	dgst, err := digest.Parse(pi.GetDigest())
	if err != nil {
		return content.Info{}, fmt.Errorf("content service returned a bad digest %q: %v: %w", pi.GetDigest(), err, errdefs.ErrUnknown)
	}
	return content.Info{
		Digest:    dgst,
		Size:      pi.GetSize(),
		CreatedAt: asTime(pi.GetCreatedAt()),
		UpdatedAt: asTime(pi.GetUpdatedAt()),
		Labels:    pi.GetLabels(),
	}, nil
}

func statusFromProto(st *contentv1.Status) content.Status {
	return content.Status{
		Ref:       st.GetRef(),
		Offset:    st.GetOffset(),
		Total:     st.GetTotal(),
		Expected:  digest.Digest(st.GetExpected()),
		StartedAt: asTime(st.GetStartedAt()),
		UpdatedAt: asTime(st.GetUpdatedAt()),
	}
}

// asTime converts a timestamp, leaving an absent one as the zero time.
func asTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// ReaderAt opens the blob of desc.Digest. Its size comes from desc.Size when
// set, else from Info.
func (p *proxyStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	r := &readerAt{ctx: ctx, client: p.client, dgst: desc.Digest, size: desc.Size}
	if desc.Size > 0 {
		// Start streaming from the beginning now: it answers "does the blob
		// exist?" in the same round trip as Info would, and most readers
		// start at offset 0.
		if err := r.fetch(0); err != nil {
			r.Close()
			return nil, err
		}
		return r, nil
	}
	info, err := p.Info(ctx, desc.Digest)
	if err != nil {
		return nil, err
	}
	r.size = info.Size
	return r, nil
}
