// Package metadata is berthd's metadata store: namespaces, images, leases and
// the per-namespace records of content, kept in one bbolt database, plus the
// mark-and-sweep garbage collector that frees what nothing refers to.
//
// The blobs themselves live in a raw, un-namespaced content store (the local
// package). A namespace sees a blob only through its own record of it, so two
// namespaces can share one blob on disk while each keeps its own labels, and
// deleting the blob in one leaves it to the other.
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
//	    leases/<id>/
//	      createdat
//	      labels/<key> = <value>
//	      content/<digest> = ""
//	      ingests/<ref> = ""
//
// # Transactions
//
// Every change is one bbolt transaction, and no transaction does blob I/O or
// calls another service: a commit writes the blob to the backing store first
// and records it afterwards. A read-write lock orders those two steps against
// the garbage collector, which deletes blobs no namespace records; see gc.go.
//
// # Garbage collection
//
// Roots are image targets, the resources of leases that have not expired, and
// ingests held by a lease. From a content record, labels whose key starts with
// "berth.gc.ref.content" name further digests in the same namespace. Content
// records not reached are deleted in one write transaction together with the
// expired leases; then blobs that no namespace records are deleted from the
// backing store, and ingests no lease holds that were idle longer than the
// ingest expiry are aborted.
package metadata
