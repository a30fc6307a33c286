// Package filters parses and applies the filter expressions that List calls
// take, in containerd's syntax:
//
//	name==docker.io/library/busybox:latest
//	labels."berth.io/kind"!=test,name~=busybox
//	labels.app
//
// A filter is comma-separated conditions that must all hold; a list of
// filters matches when any of them does. An operator is == (equal),
// != (not equal) or ~= (regular expression); a bare field tests presence.
// Field paths are dot-separated; a part may be double-quoted.
package filters

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Adaptor exposes an object's fields to a filter.
type Adaptor interface {
	// Field returns the value at fieldpath and whether it is present.
	Field(fieldpath []string) (value string, present bool)
}

// AdaptorFunc adapts a function to Adaptor.
type AdaptorFunc func(fieldpath []string) (string, bool)

// Field calls f.
func (f AdaptorFunc) Field(fieldpath []string) (string, bool) { return f(fieldpath) }

// Filter matches objects through their Adaptor.
type Filter interface {
	Match(a Adaptor) bool
}

// Parse parses filters; the result matches when any of them does, and
// matches everything when there are none.
func Parse(filters ...string) (Filter, error) {
	var any anyOf
	for _, f := range filters {
		if strings.TrimSpace(f) == "" {
			continue
		}
		all, err := parseConditions(f)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", f, err)
		}
		any = append(any, all)
	}
	if len(any) == 0 {
		return always{}, nil
	}
	return any, nil
}

type always struct{}

func (always) Match(Adaptor) bool { return true }

type anyOf []Filter

func (fs anyOf) Match(a Adaptor) bool {
	for _, f := range fs {
		if f.Match(a) {
			return true
		}
	}
	return false
}

type allOf []condition

func (cs allOf) Match(a Adaptor) bool {
	for _, c := range cs {
		if !c.match(a) {
			return false
		}
	}
	return true
}

type operator int

const (
	opPresent operator = iota
	opEqual
	opNotEqual
	opMatches
)

type condition struct {
	path  []string
	op    operator
	value string
	re    *regexp.Regexp
}

func (c condition) match(a Adaptor) bool {
	v, ok := a.Field(c.path)
	switch c.op {
	case opPresent:
		return ok
	case opEqual:
		return ok && v == c.value
	case opNotEqual:
		return !ok || v != c.value
	case opMatches:
		return ok && c.re.MatchString(v)
	}
	return false
}

// parseConditions parses "cond,cond,...".
func parseConditions(s string) (allOf, error) {
	p := &parser{s: s}
	var all allOf
	for {
		c, err := p.condition()
		if err != nil {
			return nil, err
		}
		all = append(all, c)
		if p.eof() {
			return all, nil
		}
		if !p.consume(",") {
			return nil, p.errorf("expected ',' or end of filter")
		}
	}
}

type parser struct {
	s   string
	pos int
}

func (p *parser) eof() bool { return p.pos >= len(p.s) }

func (p *parser) consume(tok string) bool {
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s: %w", p.pos, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func (p *parser) condition() (condition, error) {
	var c condition
	for {
		part, err := p.fieldPart()
		if err != nil {
			return c, err
		}
		c.path = append(c.path, part)
		if !p.consume(".") {
			break
		}
	}
	switch {
	case p.consume("=="):
		c.op = opEqual
	case p.consume("!="):
		c.op = opNotEqual
	case p.consume("~="):
		c.op = opMatches
	default:
		c.op = opPresent
		return c, nil
	}
	v, err := p.value()
	if err != nil {
		return c, err
	}
	c.value = v
	if c.op == opMatches {
		re, err := regexp.Compile(v)
		if err != nil {
			return c, p.errorf("bad regular expression %q: %v", v, err)
		}
		c.re = re
	}
	return c, nil
}

func (p *parser) fieldPart() (string, error) {
	if p.eof() {
		return "", p.errorf("expected a field name")
	}
	if p.s[p.pos] == '"' {
		return p.quoted()
	}
	start := p.pos
	for !p.eof() && isFieldChar(p.s[p.pos]) {
		p.pos++
	}
	if start == p.pos {
		return "", p.errorf("expected a field name")
	}
	return p.s[start:p.pos], nil
}

func isFieldChar(c byte) bool {
	return c == '_' || c == '-' || c == '/' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// value reads a quoted string, or everything up to the next unescaped ','.
func (p *parser) value() (string, error) {
	if !p.eof() && (p.s[p.pos] == '"' || p.s[p.pos] == '/') {
		return p.quoted()
	}
	start := p.pos
	for !p.eof() && p.s[p.pos] != ',' {
		p.pos++
	}
	return p.s[start:p.pos], nil
}

// quoted reads a Go-style "..." string, or a /.../ regular expression.
func (p *parser) quoted() (string, error) {
	q := p.s[p.pos]
	end := p.pos + 1
	for end < len(p.s) && p.s[end] != q {
		if p.s[end] == '\\' {
			end++
		}
		end++
	}
	if end >= len(p.s) {
		return "", p.errorf("unterminated %c", q)
	}
	raw := p.s[p.pos : end+1]
	p.pos = end + 1
	if q == '/' {
		return strings.ReplaceAll(raw[1:len(raw)-1], `\/`, `/`), nil
	}
	v, err := strconv.Unquote(raw)
	if err != nil {
		return "", p.errorf("bad quoted string %s", raw)
	}
	return v, nil
}

// MapField looks up a "labels.KEY" style field path in m: the key is the
// rest of the path joined by dots, so both labels."a.b" and labels.a.b work.
// The bare map name is present when m has any entry.
func MapField(m map[string]string, fieldpath []string) (string, bool) {
	if len(fieldpath) < 2 {
		return "", len(m) > 0
	}
	v, ok := m[strings.Join(fieldpath[1:], ".")]
	return v, ok
}
