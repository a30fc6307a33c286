package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/command"
	"github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// BenchmarkImages1000 runs `berth images` over 1,000 distinct images (each
// its own manifest and config) made through the API, as tools/bench does
// against a real berthd. The first run reads every blob and stores the
// records' summaries; the others read none.
func BenchmarkImages1000(b *testing.B) {
	e := newEnv(b)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	cl, err := client.New(ctx, e.address)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	put := func(desc ocispec.Descriptor, data []byte, labels map[string]string) {
		if err := content.WriteBlob(ctx, cl.Content, "bench-"+desc.Digest.Encoded(), bytes.NewReader(data), desc, content.WithLabels(labels)); err != nil {
			b.Fatal(err)
		}
	}
	layer := []byte("one shared layer")
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	put(layerDesc, layer, nil)
	for i := range 1000 {
		created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
		config, _ := json.Marshal(ocispec.Image{
			Created:  &created,
			Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
			Config:   ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{fmt.Sprintf("N=%d", i)}},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
		})
		configDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}
		manifest, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: configDesc, Layers: []ocispec.Descriptor{layerDesc}})
		manifestDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}
		put(configDesc, config, nil)
		put(manifestDesc, manifest, map[string]string{"berth.gc.ref.content.config": configDesc.Digest.String(), "berth.gc.ref.content.l.0": layerDesc.Digest.String()})
		if _, err := cl.Images.Create(ctx, images.Image{Name: fmt.Sprintf("docker.io/bench/img%04d:latest", i), Target: manifestDesc}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		var out, errb bytes.Buffer
		if code := command.Run(context.Background(), []string{"--address", e.address, "images"}, command.Streams{Out: &out, Err: &errb}, command.BuildInfo{}); code != 0 {
			b.Fatalf("exit %d: %s", code, errb.String())
		}
	}
}
