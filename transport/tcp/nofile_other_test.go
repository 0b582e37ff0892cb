//go:build !unix

package tcp_test

import "errors"

func setNOFILE(uint64) error { return errors.ErrUnsupported }

const canSetNOFILE = false
