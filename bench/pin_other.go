//go:build !linux

package main

import "errors"

// defaultPin is the placement used unless -pin says otherwise: pinning is
// implemented for Linux only.
const defaultPin = pinNone

var errNoPin = errors.New("-pin needs Linux")

func pinTo([]int) error { return errNoPin }

func allowedCPUs() ([]int, error) { return nil, errNoPin }
