package reliability

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines in the parent and, because the
// children are this same binary, in every child too: a server child whose
// Run returned with goroutines left behind exits non-zero, and the parent's
// stop fails the test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
