// Package imageserver serves the berth.images.v1.Images gRPC API from an
// images.Store.
package imageserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageconv"
)

type service struct {
	imagesv1.UnimplementedImagesServer
	store images.Store
}

// New returns the Images service backed by store.
func New(store images.Store) imagesv1.ImagesServer {
	return &service{store: store}
}

// Register serves the Images service of store on s.
func Register(s *grpc.Server, store images.Store) {
	imagesv1.RegisterImagesServer(s, New(store))
}

func (s *service) Get(ctx context.Context, req *imagesv1.GetImageRequest) (*imagesv1.GetImageResponse, error) {
	img, err := s.store.Get(ctx, req.GetName())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &imagesv1.GetImageResponse{Image: imageconv.ToProto(img)}, nil
}

func (s *service) List(ctx context.Context, req *imagesv1.ListImagesRequest) (*imagesv1.ListImagesResponse, error) {
	imgs, err := s.store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &imagesv1.ListImagesResponse{Images: make([]*imagesv1.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, imageconv.ToProto(img))
	}
	return resp, nil
}

func (s *service) Create(ctx context.Context, req *imagesv1.CreateImageRequest) (*imagesv1.CreateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("creating an image: the request has no image: %w", errdefs.ErrInvalidArgument))
	}
	img, err := s.store.Create(ctx, imageconv.FromProto(req.GetImage()))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &imagesv1.CreateImageResponse{Image: imageconv.ToProto(img)}, nil
}

func (s *service) Update(ctx context.Context, req *imagesv1.UpdateImageRequest) (*imagesv1.UpdateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("updating an image: the request has no image: %w", errdefs.ErrInvalidArgument))
	}
	img, err := s.store.Update(ctx, imageconv.FromProto(req.GetImage()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &imagesv1.UpdateImageResponse{Image: imageconv.ToProto(img)}, nil
}

func (s *service) Delete(ctx context.Context, req *imagesv1.DeleteImageRequest) (*emptypb.Empty, error) {
	var opts []images.DeleteOpt
	if req.GetSync() {
		opts = append(opts, images.SynchronousDelete())
	}
	if err := s.store.Delete(ctx, req.GetName(), opts...); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}
