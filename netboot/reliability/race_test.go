//go:build race

package reliability

// raceEnabled: the race detector multiplies memory use several times.
const raceEnabled = true
