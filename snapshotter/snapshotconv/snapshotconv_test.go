package snapshotconv

import (
	"reflect"
	"testing"
	"time"

	"github.com/berth-engine/berth/snapshotter/snapshots"
)

func TestRoundTrip(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	for _, info := range []snapshots.Info{
		{Kind: snapshots.KindActive, Name: "a", Parent: "p", Labels: map[string]string{"k": "v"}, Created: now, Updated: now.Add(time.Second)},
		{Kind: snapshots.KindView, Name: "v"},
		{Kind: snapshots.KindCommitted, Name: "c"},
	} {
		if got := InfoFromProto(InfoToProto(info)); !reflect.DeepEqual(got, info) {
			t.Errorf("round trip of %+v gave %+v", info, got)
		}
	}
	if got := InfoFromProto(nil); !reflect.DeepEqual(got, snapshots.Info{}) {
		t.Errorf("nil info gave %+v", got)
	}
}
