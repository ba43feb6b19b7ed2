package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-runs this test binary as a child (TestCrashChild) that
// writes secrets and changes the passphrase in a loop, printing each one
// only after its commit returned. The parent kill -9's it at random points,
// then reopens the database: it must open, hold every reported secret with
// the right value, unlock with the last reported passphrase (or the one
// being changed to), and its audit chain must verify.

const crashChildEnv = "ONRAMP_STORE_CRASH_CHILD"

func crashValue(i int) []byte {
	h := sha256.Sum256([]byte("crash-secret-" + strconv.Itoa(i)))
	// 2.5 KB .. 51 KB: a commit spans many pages, so kills land mid-write.
	return []byte(strings.Repeat(hex.EncodeToString(h[:]), 40*(1+i%20)))
}

func crashName(i int) string { return fmt.Sprintf("s-%06d", i) }

var crashPasses = [2]string{testPass, testPass2}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("only runs as the crash test's child")
	}
	// spec: dir|start|passIndex
	parts := strings.Split(spec, "|")
	dir := parts[0]
	start, _ := strconv.Atoi(parts[1])
	pass, _ := strconv.Atoi(parts[2])
	ctx := context.Background()
	db, err := Open(ctx, dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	v := NewVault(db, VaultOptions{Actor: "crash-child", ScryptWorkFactor: testWork})
	if err := v.Unlock(ctx, crashPasses[pass]); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(20 * time.Second)
	for i := start; i < start+100_000 && time.Now().Before(deadline); i++ {
		if i%7 == 6 {
			next := 1 - pass
			fmt.Fprintf(out, "changing %d\n", next)
			out.Flush()
			if err := v.ChangePassphrase(ctx, crashPasses[pass], crashPasses[next]); err != nil {
				fmt.Fprintln(out, "error", err)
				out.Flush()
				os.Exit(2)
			}
			pass = next
			fmt.Fprintf(out, "pass %d\n", pass)
		}
		if err := v.Put(ctx, crashName(i), crashValue(i), "crash test"); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintf(out, "ok %d\n", i)
		out.Flush()
	}
	db.Close()
	os.Exit(0)
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: not in -short")
	}
	t.Parallel()
	dir := t.TempDir()
	ctx := t.Context()
	{
		db, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		v := NewVault(db, VaultOptions{ScryptWorkFactor: testWork})
		if err := v.Create(ctx, crashPasses[0]); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	reported := map[int]bool{}
	next, pass := 0, 0
	changing := -1 // passphrase being changed to when killed, if any
	const rounds = 12
	budget := time.Now().Add(60 * time.Second)
	for round := range rounds {
		if time.Now().After(budget) {
			t.Logf("time budget spent after %d rounds", round)
			break
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d", crashChildEnv, dir, next, pass))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 1 + rng.IntN(60) // commits, or
		killTimer := time.AfterFunc(time.Duration(5+rng.IntN(300))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(stdout)
		seen := 0
		changing = -1
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "ok":
				i, _ := strconv.Atoi(f[1])
				reported[i] = true
				next = i + 1
				seen++
				if seen == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			case "changing":
				changing, _ = strconv.Atoi(f[1])
			case "pass":
				pass, _ = strconv.Atoi(f[1])
				changing = -1
			case "error":
				t.Fatalf("round %d: child: %s", round, sc.Text())
			}
		}
		killTimer.Stop()
		err = cmd.Wait()
		t.Logf("round %d: %d commits reported before kill (%v)", round, seen, err)

		// Reopen as the next Onramp would.
		db, err := Open(ctx, dir)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		v := NewVault(db, VaultOptions{ScryptWorkFactor: testWork})
		if err := v.Unlock(ctx, crashPasses[pass]); err != nil {
			// Killed between the passphrase change's commit and its report.
			if changing < 0 {
				t.Fatalf("round %d: unlock with the reported passphrase: %v", round, err)
			}
			if err2 := v.Unlock(ctx, crashPasses[changing]); err2 != nil {
				t.Fatalf("round %d: unlock with neither passphrase: %v / %v", round, err, err2)
			}
			pass = changing
		}
		names, err := v.Names(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names { // every stored secret is intact, reported or not
			i, _ := strconv.Atoi(strings.TrimPrefix(n, "s-"))
			got, err := v.Get(ctx, n)
			if err != nil || string(got) != string(crashValue(i)) {
				t.Fatalf("round %d: secret %s: %v (len %d)", round, n, err, len(got))
			}
			if i >= next {
				next = i + 1 // committed, killed before the report
			}
		}
		have := map[string]bool{}
		for _, n := range names {
			have[n] = true
		}
		for i := range reported {
			if !have[crashName(i)] {
				t.Fatalf("round %d: secret %s was reported committed but is gone", round, crashName(i))
			}
		}
		if _, _, err := db.VerifyAudit(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(reported) == 0 {
		t.Fatal("the child never reported a commit: the test tested nothing")
	}
	t.Logf("%d secrets reported committed over the rounds; all intact", len(reported))
}
