// Package formatter prints lists and objects the way Docker's CLI does: a
// table by default, one JSON object per line with --format json, or the
// user's Go template, with Docker's template functions.
package formatter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/berth-engine/berth/internal/errdefs"
)

// The reserved values of a --format flag.
const (
	TableFormatKey = "table"
	JSONFormatKey  = "json"
)

// Format is the value of a --format flag: "" or "table" (the command's
// default table), "json", "table TEMPLATE" (a table with headers) or a bare
// Go template.
type Format string

// IsTable reports whether f prints a table with a header line.
func (f Format) IsTable() bool { return f == "" || strings.HasPrefix(string(f), TableFormatKey) }

// IsJSON reports whether f is exactly "json".
func (f Format) IsJSON() bool { return f == JSONFormatKey }

// Header names the columns of a table: it maps each field a template may
// name (".ID") to its column title ("IMAGE ID").
type Header map[string]string

// Table describes how one kind of row is printed.
type Table struct {
	// Default is the template of the default table, "table {{.A}}\t{{.B}}".
	Default string
	// Header gives the column titles.
	Header Header
}

// Write prints rows to w in format f. Rows are structs whose exported fields
// the templates name; with "json" each row is marshalled on its own line.
func Write[T any](w io.Writer, f Format, t Table, rows []T) error {
	if f.IsJSON() {
		return writeJSONLines(w, rows)
	}
	text := string(f)
	if text == "" || text == TableFormatKey {
		text = t.Default
	}
	table := Format(text).IsTable()
	tmpl, err := Parse(templateText(text))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, row := range rows {
		if err := tmpl.Execute(&buf, row); err != nil {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "executing template %q: %v", text, err)
		}
		buf.WriteByte('\n')
	}
	if !table {
		_, err := buf.WriteTo(w)
		return err
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	// The header runs the same template over the column titles, with
	// functions that leave the titles as they are.
	if err := tmpl.Funcs(headerFuncs).Execute(tw, map[string]string(t.Header)); err != nil {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "executing template header %q: %v", text, err)
	}
	tw.Write([]byte{'\n'})
	buf.WriteTo(tw)
	return tw.Flush()
}

func writeJSONLines[T any](w io.Writer, rows []T) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, row := range rows {
		if err := enc.Encode(row); err != nil {
			return fmt.Errorf("encoding JSON: %w", err)
		}
	}
	_, err := buf.WriteTo(w)
	return err
}

// templateText turns a --format value into template text: it drops the
// "table" prefix and turns the two-character escapes \t and \n, which
// shells pass literally, into a tab and a newline.
func templateText(format string) string {
	out, _ := strings.CutPrefix(format, TableFormatKey)
	out = strings.Trim(out, " ")
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(out)
}

// Parse parses a Go template with Docker's template functions (json,
// upper, lower, title, split, join, pad, truncate).
func Parse(text string) (*template.Template, error) {
	tmpl, err := template.New("").Funcs(basicFuncs).Parse(text)
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "parsing template %q: %v", text, err)
	}
	return tmpl, nil
}

// ExecuteEach runs the template text once per object, each output followed
// by a newline, as `docker inspect --format` does.
func ExecuteEach[T any](w io.Writer, text string, objects []T) error {
	tmpl, err := Parse(templateText(text))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, o := range objects {
		if err := tmpl.Execute(&buf, o); err != nil {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "executing template %q: %v", text, err)
		}
		buf.WriteByte('\n')
	}
	_, err = buf.WriteTo(w)
	return err
}

// ExecuteInspect runs the template text once per object, as
// `docker inspect --format` does: on the object itself, and, where that
// fails (a field named as in the JSON, {{.Id}}), on the object's JSON.
func ExecuteInspect[T any](w io.Writer, text string, objects []T) error {
	tmpl, err := Parse(templateText(text))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, o := range objects {
		var one bytes.Buffer
		if err := tmpl.Execute(&one, o); err != nil {
			raw, rerr := rawJSON(o)
			if rerr != nil {
				return rerr
			}
			one.Reset()
			if rerr := tmpl.Execute(&one, raw); rerr != nil {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "executing template %q: %v", text, err)
			}
		}
		buf.Write(one.Bytes())
		buf.WriteByte('\n')
	}
	_, err = buf.WriteTo(w)
	return err
}

// rawJSON returns o as its JSON decodes into maps, numbers kept exact.
func rawJSON(o any) (any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// WriteJSONIndent prints v as indented JSON followed by a newline, the way
// `docker inspect` prints its array.
func WriteJSONIndent(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	_, err := buf.WriteTo(w)
	return err
}
