// Package imageproxy implements images.Store over the berth.images.v1.Images
// gRPC API, so that a client uses berthd's images as it would a local store.
package imageproxy

import (
	"context"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/errdefs"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageconv"
)

type store struct {
	client imagesv1.ImagesClient
}

// NewStore returns an images.Store that calls client. The namespace travels
// in the context (namespaces.WithNamespace).
func NewStore(client imagesv1.ImagesClient) images.Store {
	return &store{client: client}
}

func (s *store) Get(ctx context.Context, name string) (images.Image, error) {
	resp, err := s.client.Get(ctx, &imagesv1.GetImageRequest{Name: name})
	if err != nil {
		return images.Image{}, errdefs.FromGRPC(err)
	}
	return imageconv.FromProto(resp.GetImage()), nil
}

func (s *store) List(ctx context.Context, filters ...string) ([]images.Image, error) {
	resp, err := s.client.List(ctx, &imagesv1.ListImagesRequest{Filters: filters})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	imgs := make([]images.Image, 0, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		imgs = append(imgs, imageconv.FromProto(img))
	}
	return imgs, nil
}

func (s *store) Create(ctx context.Context, image images.Image) (images.Image, error) {
	resp, err := s.client.Create(ctx, &imagesv1.CreateImageRequest{Image: imageconv.ToProto(image)})
	if err != nil {
		return images.Image{}, errdefs.FromGRPC(err)
	}
	return imageconv.FromProto(resp.GetImage()), nil
}

func (s *store) Update(ctx context.Context, image images.Image, fieldpaths ...string) (images.Image, error) {
	req := &imagesv1.UpdateImageRequest{Image: imageconv.ToProto(image)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(ctx, req)
	if err != nil {
		return images.Image{}, errdefs.FromGRPC(err)
	}
	return imageconv.FromProto(resp.GetImage()), nil
}

func (s *store) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	_, err := s.client.Delete(ctx, &imagesv1.DeleteImageRequest{Name: name, Sync: o.Synchronous})
	return errdefs.FromGRPC(err)
}
