package node_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Clients and simulators must leave no goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
