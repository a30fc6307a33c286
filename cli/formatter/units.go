package formatter

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HumanSize prints a size in decimal units with three significant digits,
// as Docker does ("4.26MB", "512B", "1.2GB").
func HumanSize(size int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	f := float64(size)
	i := 0
	// 999.6kB rounds to three digits as 1e+03kB in Docker; go on to "1MB".
	for f >= 999.5 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return strconv.FormatFloat(f, 'g', 3, 64) + units[i]
}

// HumanBinarySize prints a size in binary units ("7.5GiB"), as Docker's
// info prints memory.
func HumanBinarySize(size int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(size)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// HumanDuration approximates d in words, as Docker does ("About a minute",
// "3 weeks").
func HumanDuration(d time.Duration) string {
	seconds := int(d.Seconds())
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	}
	minutes := int(d.Minutes())
	switch {
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	}
	hours := int(d.Hours() + 0.5)
	switch {
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// TimeAgo prints how long before now t was ("3 weeks ago"), or "" for the
// zero time.
func TimeAgo(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return HumanDuration(now.Sub(t)) + " ago"
}

// TimeString prints t the way Docker's CreatedAt column does
// ("2024-05-01 10:11:12 +0000 UTC"), in local time; "" for the zero time.
func TimeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 -0700 MST")
}

// TruncateID shortens a digest or ID to its first 12 hex digits, dropping
// the algorithm, as Docker shows image IDs.
func TruncateID(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
