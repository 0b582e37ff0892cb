// Package optcheck words the errors of option validation the same way in
// every package of velo: "velo: tcp: negative DialTimeout -5s". Each
// Options type has one Validate method that joins the checks of its
// fields; these helpers make each check one line.
package optcheck

import "fmt"

// Number is what the numeric checks take: counts, sizes and durations.
type Number interface {
	~int | ~int32 | ~int64 | ~float64
}

// Errorf returns the error for a bad option of the package named scope
// ("tcp", "events"; empty for the velo package itself).
func Errorf(scope, format string, args ...any) error {
	prefix := "velo: "
	if scope != "" {
		prefix += scope + ": "
	}
	return fmt.Errorf(prefix+format, args...)
}

// NotNegative reports a negative v. Zero is fine: it means the default.
func NotNegative[T Number](scope, field string, v T) error {
	if v >= 0 {
		return nil
	}
	return Errorf(scope, "negative %s %v", field, v)
}

// AtMost reports a v above limit; why says where the limit comes from.
func AtMost[T Number](scope, field string, v, limit T, why string) error {
	if v <= limit {
		return nil
	}
	return Errorf(scope, "%s %v is over %v, %s", field, v, limit, why)
}
