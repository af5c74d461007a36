package node

import "errors"

// ErrClosed is returned by operations on a closed node.
var ErrClosed = errors.New("node: closed")
