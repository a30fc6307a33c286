// Package metadata is berthd's metadata store: namespaces, images,
// containers, leases and the per-namespace records of content and snapshots,
// kept in one bbolt database, plus the mark-and-sweep garbage collector that
// frees what nothing refers to.
//
// The blobs themselves live in a raw, un-namespaced content store (the local
// package). A namespace sees a blob only through its own record of it, so two
// namespaces can share one blob on disk while each keeps its own labels, and
// deleting the blob in one leaves it to the other.
//
// # Snapshots
//
// Snapshots live in backend snapshotters (berth-snapshotter processes,
// reached through snapshotproxy) given to NewDB with WithSnapshotters.
// Snapshotter(name) is the namespaced view of one: a namespace sees the
// snapshots it has records of, under the keys it chose. Each record names
// its backend snapshot "<namespace>/<sequence>/<key>", unique in the
// database, so two namespaces can use the same key and a key used again
// after a Remove gets a fresh backend snapshot. Unlike containerd, a
// committed snapshot is not shared between namespaces: the same layer
// unpacked in two namespaces is unpacked twice.
//
// Stat, Update and Walk read the records only. Prepare, View and Commit
// record first (which reserves the key), call the backend outside the
// transaction, and drop the record again if the backend fails; Remove drops
// the record, then removes the backend snapshot, leaving it to the garbage
// collector if that fails. Labels starting with "berth.snapshot." are
// passed to the backend when a snapshot is made (snapshots.LabelRebase is
// one); the others live only in the record. A context with a lease adds the
// snapshot to the lease (resource type "snapshots/<snapshotter>").
//
// # Bucket layout
//
// Keys are bbolt buckets (ending in /) or keys holding values. Times are
// time.Time.MarshalBinary, sizes are varints, everything else is a string.
//
//	v1/                                   schema "v1"
//	  version = <decimal>                 migration level within the schema
//	  <namespace>/
//	    labels/<key> = <value>
//	    content/
//	      blob/<digest>/
//	        createdat, updatedat, size
//	        labels/<key> = <value>
//	      ingests/<ref>/                  ref as the namespace sees it; the
//	        lease = <id>                  backing store knows it as <namespace>/<ref>
//	        expected = <digest>
//	    images/<name>/
//	      createdat, updatedat
//	      target/
//	        digest, mediatype, size
//	        annotations/<key> = <value>
//	      labels/<key> = <value>
//	    snapshots/<snapshotter>/<key>/
//	      name = <backend key>            <namespace>/<sequence>/<key>
//	      kind = active | view | committed
//	      parent = <key>                  a committed snapshot of the same snapshotter
//	      children/<key> = ""
//	      createdat, updatedat
//	      labels/<key> = <value>
//	    containers/<id>/                   id: 64 hexadecimal digits
//	      name, image, snapshotter, snapshotkey
//	      runtime/
//	        name
//	        options = <Any>               Any: a marshalled google.protobuf.Any
//	      spec = <Any>                    the OCI runtime spec as JSON
//	      createdat, updatedat
//	      labels/<key> = <value>
//	      extensions/<name> = <Any>
//	    containernames/<name> = <id>      the name index, changed in the
//	                                      same transaction as the record
//	    leases/<id>/
//	      createdat
//	      labels/<key> = <value>
//	      content/<digest> = ""
//	      ingests/<ref> = ""
//	      snapshots/<snapshotter>/<key> = ""
//
// # Transactions
//
// Every change is one bbolt transaction, and no transaction does blob I/O or
// calls another service: a commit writes the blob to the backing store first
// and records it afterwards, a snapshot is recorded before the backend makes
// it. A read-write lock orders those steps against the garbage collector,
// which deletes blobs and backend snapshots no namespace records; see gc.go.
//
// # Garbage collection
//
// Roots are image targets, containers (their snapshot, named by
// snapshotter and snapshot key, and what their gc.ref labels name), the
// resources of leases that have not expired (content, ingests and
// snapshots), and snapshots labelled "berth.gc.root" (any value,
// conventionally "true"). From a content or snapshot record,
// labels whose key starts with "berth.gc.ref.content" name further digests,
// and labels "berth.gc.ref.snapshot.<snapshotter>" (optionally followed by
// "/" and anything, to give several) name snapshots of that snapshotter, all
// in the same namespace; a snapshot reached keeps its parent. The unpacker
// labels an image's config blob with the chain ID of its top layer, so an
// image keeps index -> manifest -> config -> top snapshot -> its parents.
//
// Records not reached are deleted in one write transaction together with the
// expired leases; then blobs that no namespace records are deleted from the
// backing store, ingests no lease holds that were idle longer than the ingest
// expiry are aborted, and backend snapshots that berthd made (their names
// have the backend key form) and no namespace records are removed, children
// first. So an active snapshot or view that no lease holds and nothing
// refers to is collected like anything else, as in containerd: whoever keeps
// one without a lease must refer to it (a container record does) or label it
// berth.gc.root. Each snapshotter is assumed to serve this berthd alone.
package metadata
