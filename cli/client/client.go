// Package client connects the berth command line to berthd: it dials the
// unix socket and hands out the services through their Go interfaces, so
// that commands are written against content.Store, images.Store and the
// others exactly as in-process code is.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	eventsv1 "github.com/berth-engine/berth/proto/events/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
	"github.com/berth-engine/berth/internal/namespaces"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	namespacesv1 "github.com/berth-engine/berth/proto/namespaces/v1"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/containers/containerproxy"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentproxy"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/diff/diffproxy"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageproxy"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/leases/leaseproxy"
	nsstore "github.com/berth-engine/berth/services/namespaces"
	"github.com/berth-engine/berth/services/namespaces/namespaceproxy"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/services/tasks/taskproxy"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

const (
	// DefaultAddress is where berthd listens unless told otherwise.
	DefaultAddress = "/run/berth/berthd.sock"
	// AddressEnv names the environment variable that overrides DefaultAddress.
	AddressEnv = "BERTH_ADDRESS"
	// SnapshotterEnv names the environment variable that chooses the
	// snapshotter when --snapshotter is not given.
	SnapshotterEnv = "BERTH_SNAPSHOTTER"
	// FallbackSnapshotter is the snapshotter used when berthd names no
	// default.
	FallbackSnapshotter = "overlay"
)

// Differ applies layers to snapshots and computes layers from them.
type Differ interface {
	diff.Applier
	diff.Comparer
}

// Client is a connection to berthd and the services it serves.
type Client struct {
	Address       string
	Content       content.Store
	Images        images.Store
	Leases        leases.Manager
	Namespaces    nsstore.Store
	Introspection introspectionv1.IntrospectionClient
	// Diff is berthd's Diff service.
	Diff Differ
	// Containers holds container records; Tasks runs them.
	Containers containers.Store
	Tasks      tasks.Service
	// Events streams berthd's events.
	Events eventsv1.EventsClient

	conn      *grpc.ClientConn
	snapshots snapshotsv1.SnapshotsClient

	infoMu sync.Mutex
	info   *introspectionv1.InfoResponse
}

// Info returns berthd's Info, asked once per client: its root, state and
// default snapshotter do not change while berthd runs, and a command may
// need them several times.
func (c *Client) Info(ctx context.Context) (*introspectionv1.InfoResponse, error) {
	c.infoMu.Lock()
	defer c.infoMu.Unlock()
	if c.info != nil {
		return c.info, nil
	}
	info, err := c.Introspection.Info(ctx, &emptypb.Empty{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	c.info = info
	return info, nil
}

// New connects to berthd at address (a socket path or "unix://PATH"). It
// fails at once, with a message that says what to do, when nothing listens
// there, rather than at the first call.
func New(ctx context.Context, address string, opts ...Opt) (*Client, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	path := SocketPath(address)
	if err := probe(ctx, path); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+absolute(path),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(logUnary(o.logger)),
		grpc.WithChainStreamInterceptor(logStream(o.logger)),
	)
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrUnavailable, "connecting to berthd at %s: %v", path, err)
	}
	return &Client{
		Address:       path,
		Content:       contentproxy.NewStore(contentv1.NewContentClient(conn)),
		Images:        imageproxy.NewStore(imagesv1.NewImagesClient(conn)),
		Leases:        leaseproxy.NewManager(leasesv1.NewLeasesClient(conn)),
		Namespaces:    namespaceproxy.NewStore(namespacesv1.NewNamespacesClient(conn)),
		Introspection: introspectionv1.NewIntrospectionClient(conn),
		Diff:          diffproxy.NewDiffer(diffv1.NewDiffClient(conn)),
		Containers:    containerproxy.NewStore(containersv1.NewContainersClient(conn)),
		Tasks:         taskproxy.New(tasksv1.NewTasksClient(conn)),
		Events:        eventsv1.NewEventsClient(conn),
		conn:          conn,
		snapshots:     snapshotsv1.NewSnapshotsClient(conn),
	}, nil
}

// Snapshotter returns the snapshotter berthd serves under name, scoped to
// the namespace of each call's context.
func (c *Client) Snapshotter(name string) snapshots.Snapshotter {
	return snapshotproxy.NewSnapshotter(c.snapshots, name)
}

// DefaultSnapshotter returns the snapshotter berthd uses by default, or
// FallbackSnapshotter when it names none.
func (c *Client) DefaultSnapshotter(ctx context.Context) (string, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("asking berthd for its default snapshotter: %w", err)
	}
	if name := info.GetDefaultSnapshotter(); name != "" {
		return name, nil
	}
	return FallbackSnapshotter, nil
}

// Opt configures New.
type Opt func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger logs every call to berthd at debug level.
func WithLogger(l *slog.Logger) Opt { return func(o *options) { o.logger = l } }

func logUnary(l *slog.Logger) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		l.DebugContext(ctx, "call", "method", method, "duration", time.Since(start), "error", err)
		return err
	}
}

func logStream(l *slog.Logger) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		l.DebugContext(ctx, "stream", "method", method)
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// SocketPath returns the socket path of an address given as a path or as
// "unix://PATH"; "" means DefaultAddress.
func SocketPath(address string) string {
	if address == "" {
		return DefaultAddress
	}
	if p, ok := strings.CutPrefix(address, "unix://"); ok {
		return p
	}
	return address
}

// AddressFromEnv returns BERTH_ADDRESS or DefaultAddress.
func AddressFromEnv() string {
	if a := os.Getenv(AddressEnv); a != "" {
		return a
	}
	return DefaultAddress
}

func absolute(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// probe connects to the socket once, so that a berthd that is not running
// gets a message that says so instead of a gRPC transport error.
func probe(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		return c.Close()
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return errdefs.Errorf(errdefs.ErrUnavailable, "cannot connect to berthd at %s: is it running? start it with 'berthd' or set --address", path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return errdefs.Errorf(errdefs.ErrPermissionDenied, "permission denied connecting to berthd at %s: run as root or as a member of the socket's group", path)
	}
	return errdefs.Errorf(errdefs.ErrUnavailable, "cannot connect to berthd at %s: %v", path, err)
}

// WithNamespace returns ctx scoped to namespace, after checking that the
// name is valid so that a typo fails here with a clear message.
func WithNamespace(ctx context.Context, namespace string) (context.Context, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", namespace, err)
	}
	return namespaces.WithNamespace(ctx, namespace), nil
}
