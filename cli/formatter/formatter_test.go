package formatter

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
)

type row struct {
	Repository string
	Tag        string
	ID         string
	Size       string
	Labels     []string
}

var testTable = Table{
	Default: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
	Header:  Header{"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Size": "SIZE", "Labels": "LABELS"},
}

var testRows = []row{
	{Repository: "busybox", Tag: "latest", ID: "0123456789ab", Size: "4.26MB", Labels: []string{"a=1", "b=2"}},
	{Repository: "registry.example.com:5000/team/app", Tag: "v1", ID: "ba9876543210", Size: "120MB"},
}

func write(t *testing.T, f Format) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, f, testTable, testRows); err != nil {
		t.Fatalf("Write(%q): %v", f, err)
	}
	return buf.String()
}

func TestDefaultTable(t *testing.T) {
	for _, f := range []Format{"", "table"} {
		got := write(t, f)
		want := "" +
			"REPOSITORY                           TAG       IMAGE ID       SIZE\n" +
			"busybox                              latest    0123456789ab   4.26MB\n" +
			"registry.example.com:5000/team/app   v1        ba9876543210   120MB\n"
		if got != want {
			t.Errorf("format %q:\n%s\nwant:\n%s", f, got, want)
		}
	}
}

func TestCustomTableKeepsHeadersThroughFunctions(t *testing.T) {
	got := write(t, `table {{upper .Tag}}\t{{truncate .ID 4}}`)
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", got)
	}
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "TAG" || f[1] != "IMAGE" || f[2] != "ID" {
		t.Errorf("header = %q, want TAG and IMAGE ID", lines[0])
	}
	if f := strings.Fields(lines[1]); f[0] != "LATEST" || f[1] != "0123" {
		t.Errorf("row = %q, want LATEST 0123", lines[1])
	}
}

func TestTemplateWithoutTable(t *testing.T) {
	got := write(t, "{{.Repository}}:{{.Tag}}")
	want := "busybox:latest\nregistry.example.com:5000/team/app:v1\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = write(t, `{{join .Labels ","}}|{{lower "ABC"}}|{{json .Labels}}`)
	want = "a=1,b=2|abc|[\"a=1\",\"b=2\"]\n|abc|null\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestJSONLines(t *testing.T) {
	got := write(t, "json")
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if len(lines) != len(testRows) {
		t.Fatalf("want %d lines, got %q", len(testRows), got)
	}
	for i, l := range lines {
		var r row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		if r.Repository != testRows[i].Repository || r.ID != testRows[i].ID {
			t.Errorf("line %d = %+v, want %+v", i, r, testRows[i])
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, "{{.Repository", testTable, testRows)
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("unterminated action: err = %v, want invalid argument", err)
	}
	err = Write(&buf, "{{.NoSuchField}}", testTable, testRows)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "NoSuchField") {
		t.Errorf("unknown field: err = %v, want invalid argument naming the field", err)
	}
}

func TestExecuteEach(t *testing.T) {
	var buf bytes.Buffer
	if err := ExecuteEach(&buf, "{{.Repository}} {{.Size}}", testRows); err != nil {
		t.Fatal(err)
	}
	if want := "busybox 4.26MB\nregistry.example.com:5000/team/app 120MB\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestHumanSize(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{
		{0, "0B"}, {999, "999B"}, {1000, "1kB"}, {1234, "1.23kB"},
		{4261234, "4.26MB"}, {999_700, "1MB"}, {120_000_000, "120MB"}, {1_500_000_000, "1.5GB"},
	} {
		if got := HumanSize(c.in); got != c.want {
			t.Errorf("HumanSize(%d) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := HumanBinarySize(8 << 30); got != "8GiB" {
		t.Errorf("HumanBinarySize(8GiB) = %q", got)
	}
}

func TestHumanDuration(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want string
	}{
		{0, "Less than a second"}, {time.Second, "1 second"}, {45 * time.Second, "45 seconds"},
		{70 * time.Second, "About a minute"}, {10 * time.Minute, "10 minutes"},
		{50 * time.Minute, "50 minutes"}, {65 * time.Minute, "About an hour"}, {5 * time.Hour, "5 hours"},
		{3 * 24 * time.Hour, "3 days"}, {21 * 24 * time.Hour, "3 weeks"}, {90 * 24 * time.Hour, "3 months"},
		{3 * 365 * 24 * time.Hour, "3 years"},
	} {
		if got := HumanDuration(c.in); got != c.want {
			t.Errorf("HumanDuration(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	now := time.Now()
	if got := TimeAgo(now.Add(-21*24*time.Hour), now); got != "3 weeks ago" {
		t.Errorf("TimeAgo = %q", got)
	}
	if got := TimeAgo(time.Time{}, now); got != "" {
		t.Errorf("TimeAgo(zero) = %q, want empty", got)
	}
}

func TestTruncateID(t *testing.T) {
	id := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if got := TruncateID(id); got != "0123456789ab" {
		t.Errorf("TruncateID = %q", got)
	}
	if got := TruncateID("abc"); got != "abc" {
		t.Errorf("TruncateID(short) = %q", got)
	}
}

func TestExecuteInspectTypedThenJSON(t *testing.T) {
	type obj struct {
		ID   string `json:"Id"`
		Size int64
	}
	objs := []obj{{ID: "sha256:1", Size: 12}}
	for text, want := range map[string]string{
		"{{.ID}} {{.Size}}": "sha256:1 12\n",
		"{{.Id}} {{.Size}}": "sha256:1 12\n", // the JSON's name, as Docker's fallback
	} {
		var buf bytes.Buffer
		if err := ExecuteInspect(&buf, text, objs); err != nil || buf.String() != want {
			t.Errorf("%s: %q, %v; want %q", text, buf.String(), err, want)
		}
	}
	// A field neither has reads as missing from the JSON, as in Docker.
	var buf bytes.Buffer
	if err := ExecuteInspect(&buf, "{{.Nope}}", objs); err != nil || buf.String() != "<no value>\n" {
		t.Errorf("a field neither the object nor its JSON has: %q, %v", buf.String(), err)
	}
}
