package containers

import (
	"strconv"
	"strings"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Container labels holding the json-file log options given with
// `--log-opt`, in Docker's syntax; berthd passes them to the shim. No label
// means the shim's default (10 MB, 3 files).
const (
	LogMaxSizeLabel = "berth.log.max-size"
	LogMaxFileLabel = "berth.log.max-file"
)

// LogConfig is how a container's json-file log rotates.
type LogConfig struct {
	// MaxSize is the size in bytes at which the log is rotated; 0 is the
	// default.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included; 0 is
	// the default.
	MaxFiles int
}

// ParseLogOpts checks Docker's `--log-opt KEY=VALUE` options of the
// json-file driver and returns them as the labels that record them.
func ParseLogOpts(opts []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, o := range opts {
		key, value, ok := strings.Cut(o, "=")
		if !ok {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid log opt %q: write KEY=VALUE, as max-size=10m", o)
		}
		switch key {
		case "max-size":
			if _, err := parseLogSize(value); err != nil {
				return nil, err
			}
			labels[LogMaxSizeLabel] = value
		case "max-file":
			if _, err := parseLogFiles(value); err != nil {
				return nil, err
			}
			labels[LogMaxFileLabel] = value
		default:
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "unknown log opt '%s' for json-file log driver: use max-size or max-file", key)
		}
	}
	return labels, nil
}

// LogConfigOf reads the log options recorded in a container's labels.
func LogConfigOf(labels map[string]string) (LogConfig, error) {
	var c LogConfig
	var err error
	if v, ok := labels[LogMaxSizeLabel]; ok {
		if c.MaxSize, err = parseLogSize(v); err != nil {
			return LogConfig{}, err
		}
	}
	if v, ok := labels[LogMaxFileLabel]; ok {
		if c.MaxFiles, err = parseLogFiles(v); err != nil {
			return LogConfig{}, err
		}
	}
	return c, nil
}

// parseLogSize reads a size as Docker's max-size does: a number with an
// optional unit b, k, m or g (powers of 1024), as in "10m" or "512k".
func parseLogSize(s string) (int64, error) {
	num := strings.ToLower(strings.TrimSpace(s))
	num = strings.TrimSuffix(num, "b")
	num = strings.TrimSuffix(num, "i")
	mult := float64(1)
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			num = strings.TrimSpace(num[:n-1])
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	size := int64(f * mult)
	if err != nil || f <= 0 || size < 1 {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid max-size %q: give a positive size such as 10m, 512k or 1g", s)
	}
	return size, nil
}

// parseLogFiles reads max-file: a count of 1 or more.
func parseLogFiles(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 1 {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid max-file %q: give a whole number of 1 or more", s)
	}
	return int(n), nil
}
