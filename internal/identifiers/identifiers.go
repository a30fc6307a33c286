// Package identifiers validates the names of namespaces, leases and other
// objects that become keys in the metadata store and parts of paths.
package identifiers

import (
	"fmt"
	"regexp"

	"github.com/berth-engine/berth/internal/errdefs"
)

const maxLength = 76

// An identifier is letters and digits joined by single '.', '_' or '-'.
var pattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// Validate returns an invalid-argument error unless s is a valid identifier.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > maxLength:
		return fmt.Errorf("identifier %q is longer than %d characters: %w", s, maxLength, errdefs.ErrInvalidArgument)
	case !pattern.MatchString(s):
		return fmt.Errorf("identifier %q must be letters and digits joined by single '.', '_' or '-': %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}
