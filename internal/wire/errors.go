package wire

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("wire: malformed frame")

// ErrFrameTooLarge is returned when a length prefix announces a frame larger
// than the configured maximum. The frame is refused before anything is
// allocated for it.
var ErrFrameTooLarge = errors.New("wire: frame too large")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
