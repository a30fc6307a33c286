// Package contentserver serves a content.Store as the berth.content.v1.Content
// gRPC service. The stream's context is passed to the store, so the
// namespace and lease headers of the request reach it.
package contentserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	"github.com/berth-engine/berth/services/content"
)

const (
	// readChunkSize is the data carried by one Read response.
	readChunkSize = 1 << 20
	// listBatchSize is the number of Info carried by one List response.
	listBatchSize = 100
)

type service struct {
	contentv1.UnimplementedContentServer
	store content.Store
}

// New returns the Content service over cs.
func New(cs content.Store) contentv1.ContentServer {
	return &service{store: cs}
}

// Register registers the Content service over cs on s.
func Register(s *grpc.Server, cs content.Store) {
	contentv1.RegisterContentServer(s, New(cs))
}

func parseDigest(s string) (digest.Digest, error) {
	if s == "" {
		return "", fmt.Errorf("no digest given: %w", errdefs.ErrInvalidArgument)
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("digest %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// parseOptionalDigest is parseDigest where an empty string means "unknown".
func parseOptionalDigest(s string) (digest.Digest, error) {
	if s == "" {
		return "", nil
	}
	return parseDigest(s)
}

func (s *service) Info(ctx context.Context, req *contentv1.InfoRequest) (*contentv1.InfoResponse, error) {
	dgst, err := parseDigest(req.GetDigest())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	info, err := s.store.Info(ctx, dgst)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &contentv1.InfoResponse{Info: infoToProto(info)}, nil
}

func (s *service) Update(ctx context.Context, req *contentv1.UpdateRequest) (*contentv1.UpdateResponse, error) {
	if req.GetInfo() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("update without info: %w", errdefs.ErrInvalidArgument))
	}
	dgst, err := parseDigest(req.GetInfo().GetDigest())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	info := content.Info{Digest: dgst, Labels: req.GetInfo().GetLabels()}
	info, err = s.store.Update(ctx, info, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &contentv1.UpdateResponse{Info: infoToProto(info)}, nil
}

func (s *service) List(req *contentv1.ListContentRequest, stream grpc.ServerStreamingServer[contentv1.ListContentResponse]) error {
	// Collect first, send after: a store may hold a database transaction
	// during Walk, and no network I/O should happen inside one.
	var infos []*contentv1.Info
	err := s.store.Walk(stream.Context(), func(info content.Info) error {
		infos = append(infos, infoToProto(info))
		return nil
	}, req.GetFilters()...)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	for len(infos) > 0 {
		n := min(len(infos), listBatchSize)
		if err := stream.Send(&contentv1.ListContentResponse{Info: infos[:n]}); err != nil {
			return err
		}
		infos = infos[n:]
	}
	return nil
}

func (s *service) Delete(ctx context.Context, req *contentv1.DeleteContentRequest) (*emptypb.Empty, error) {
	dgst, err := parseDigest(req.GetDigest())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := s.store.Delete(ctx, dgst); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Read streams [offset, offset+size) of a blob in readChunkSize messages; a
// size of 0, or one reaching past the end, reads to the end.
func (s *service) Read(req *contentv1.ReadContentRequest, stream grpc.ServerStreamingServer[contentv1.ReadContentResponse]) error {
	dgst, err := parseDigest(req.GetDigest())
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	ra, err := s.store.ReaderAt(stream.Context(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	defer ra.Close()

	offset, size := req.GetOffset(), req.GetSize()
	blobSize := ra.Size()
	if offset < 0 || size < 0 {
		return errdefs.ToGRPC(fmt.Errorf("reading blob %s: negative offset %d or size %d: %w", dgst, offset, size, errdefs.ErrInvalidArgument))
	}
	if offset > blobSize {
		return errdefs.ToGRPC(fmt.Errorf("reading blob %s at offset %d: the blob has only %d bytes: %w", dgst, offset, blobSize, errdefs.ErrInvalidArgument))
	}
	end := blobSize
	if size > 0 && offset+size < blobSize {
		end = offset + size
	}

	// One buffer for the whole stream: Send encodes the message before it
	// returns, so the buffer can be refilled afterwards.
	buf := make([]byte, min(readChunkSize, max(end-offset, 1)))
	for offset < end {
		n := int(min(int64(len(buf)), end-offset))
		n, err := ra.ReadAt(buf[:n], offset)
		if n > 0 {
			if serr := stream.Send(&contentv1.ReadContentResponse{Offset: offset, Data: buf[:n]}); serr != nil {
				return serr
			}
			offset += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && offset >= end {
				break
			}
			if errors.Is(err, io.EOF) {
				return errdefs.ToGRPC(fmt.Errorf("reading blob %s: it ended at %d bytes, before the %d its size says: %w", dgst, offset, end, errdefs.ErrFailedPrecondition))
			}
			return errdefs.ToGRPC(fmt.Errorf("reading blob %s at offset %d: %w", dgst, offset, err))
		}
	}
	return nil
}

func (s *service) Status(ctx context.Context, req *contentv1.StatusRequest) (*contentv1.StatusResponse, error) {
	st, err := s.store.Status(ctx, req.GetRef())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &contentv1.StatusResponse{Status: statusToProto(st)}, nil
}

func (s *service) ListStatuses(ctx context.Context, req *contentv1.ListStatusesRequest) (*contentv1.ListStatusesResponse, error) {
	statuses, err := s.store.ListStatuses(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &contentv1.ListStatusesResponse{Statuses: make([]*contentv1.Status, 0, len(statuses))}
	for _, st := range statuses {
		resp.Statuses = append(resp.Statuses, statusToProto(st))
	}
	return resp, nil
}

func (s *service) Abort(ctx context.Context, req *contentv1.AbortRequest) (*emptypb.Empty, error) {
	if req.GetRef() == "" {
		return nil, errdefs.ToGRPC(fmt.Errorf("abort: no ref given: %w", errdefs.ErrInvalidArgument))
	}
	if err := s.store.Abort(ctx, req.GetRef()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Write runs one ingest: the first message names the ref (and the expected
// size and digest, when known) and opens the writer; each message is then
// answered with the ingest's progress. The stream ends after a COMMIT, or
// when the client closes its side; the writer is closed either way, so an
// uncommitted ingest can be resumed by a later stream.
func (s *service) Write(stream grpc.BidiStreamingServer[contentv1.WriteContentRequest, contentv1.WriteContentResponse]) error {
	return errdefs.ToGRPC(s.write(stream))
}

func (s *service) write(stream grpc.BidiStreamingServer[contentv1.WriteContentRequest, contentv1.WriteContentResponse]) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	ref := req.GetRef()
	if ref == "" {
		return fmt.Errorf("content write: the first message must name the ingest ref: %w", errdefs.ErrInvalidArgument)
	}
	total := req.GetTotal()
	expected, err := parseOptionalDigest(req.GetExpected())
	if err != nil {
		return fmt.Errorf("ingest %q: expected %w", ref, err)
	}
	w, err := s.store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(ocispec.Descriptor{Size: total, Digest: expected}))
	if err != nil {
		return err
	}
	defer w.Close()

	for {
		if req.GetRef() != "" && req.GetRef() != ref {
			return fmt.Errorf("content write: ref %q on a stream writing %q: open one stream per ref: %w", req.GetRef(), ref, errdefs.ErrInvalidArgument)
		}
		if req.GetTotal() > 0 {
			total = req.GetTotal()
		}
		if req.GetExpected() != "" {
			if expected, err = parseOptionalDigest(req.GetExpected()); err != nil {
				return fmt.Errorf("ingest %q: expected %w", ref, err)
			}
		}

		resp, err := writeAction(ctx, w, req, ref, total, expected)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if req.GetAction() == contentv1.WriteAction_WRITE_ACTION_COMMIT {
			return nil
		}

		req, err = stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// writeAction carries out one message of a Write stream.
func writeAction(ctx context.Context, w content.Writer, req *contentv1.WriteContentRequest, ref string, total int64, expected digest.Digest) (*contentv1.WriteContentResponse, error) {
	action := req.GetAction()
	switch action {
	case contentv1.WriteAction_WRITE_ACTION_STAT:
	case contentv1.WriteAction_WRITE_ACTION_WRITE, contentv1.WriteAction_WRITE_ACTION_COMMIT:
		// A COMMIT without data says nothing about offsets; anything with
		// data, and a bare WRITE, must be at the ingest's offset, except that
		// offset 0 restarts the ingest.
		if action == contentv1.WriteAction_WRITE_ACTION_WRITE || len(req.GetData()) > 0 {
			st, err := w.Status()
			if err != nil {
				return nil, err
			}
			if req.GetOffset() != st.Offset {
				if req.GetOffset() != 0 {
					return nil, fmt.Errorf("ingest %q: write at offset %d, but the ingest is at offset %d: resume from its status: %w",
						ref, req.GetOffset(), st.Offset, errdefs.ErrInvalidArgument)
				}
				if err := w.Truncate(0); err != nil {
					return nil, err
				}
			}
		}
		if len(req.GetData()) > 0 {
			if _, err := w.Write(req.GetData()); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("ingest %q: unknown write action %v: use STAT, WRITE or COMMIT: %w", ref, action, errdefs.ErrInvalidArgument)
	}

	// The response is taken before a commit: a committed writer has no
	// ingest left to describe.
	st, err := w.Status()
	if err != nil {
		return nil, err
	}
	resp := &contentv1.WriteContentResponse{
		Action:    action,
		StartedAt: timestamp(st.StartedAt),
		UpdatedAt: timestamp(st.UpdatedAt),
		Offset:    st.Offset,
		Total:     st.Total,
		Digest:    w.Digest().String(),
	}
	if action == contentv1.WriteAction_WRITE_ACTION_COMMIT {
		var opts []content.Opt
		if len(req.GetLabels()) > 0 {
			opts = append(opts, content.WithLabels(req.GetLabels()))
		}
		if err := w.Commit(ctx, total, expected, opts...); err != nil {
			return nil, err
		}
	}
	if total > 0 {
		resp.Total = total
	}
	return resp, nil
}

func infoToProto(info content.Info) *contentv1.Info {
	return &contentv1.Info{
		Digest:    info.Digest.String(),
		Size:      info.Size,
		CreatedAt: timestamp(info.CreatedAt),
		UpdatedAt: timestamp(info.UpdatedAt),
		Labels:    info.Labels,
	}
}

func statusToProto(st content.Status) *contentv1.Status {
	return &contentv1.Status{
		StartedAt: timestamp(st.StartedAt),
		UpdatedAt: timestamp(st.UpdatedAt),
		Ref:       st.Ref,
		Offset:    st.Offset,
		Total:     st.Total,
		Expected:  st.Expected.String(),
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
