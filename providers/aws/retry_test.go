package aws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
)

// TestThrottlingWithinBudget throttles or fails the first calls; the SDK's
// retryer absorbs them and every operation succeeds.
func TestThrottlingWithinBudget(t *testing.T) {
	for _, c := range []struct {
		name   string
		mode   sdkaws.RetryMode
		inject func(*ec2test.Server)
	}{
		{"standard mode, RequestLimitExceeded", sdkaws.RetryModeStandard, func(s *ec2test.Server) { s.Throttle(2) }},
		{"standard mode, InternalError 500", sdkaws.RetryModeStandard, func(s *ec2test.Server) { s.FailInternal(2) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newServer(t)
			p := newProvider(t, srv, "acme", withRetryMode(c.mode))
			ctx := ctxT(t)

			c.inject(srv)
			ms, err := p.Create(ctx, machineSpecs("c", "workers", 0, 1))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			// DescribeInstances (look-up) failed twice and succeeded on its 3rd attempt.
			if n := srv.Calls("DescribeInstances"); n != 3 {
				t.Errorf("%d DescribeInstances calls, want 3", n)
			}

			c.inject(srv)
			listed, err := p.List(ctx)
			if err != nil || len(listed) != 1 {
				t.Fatalf("List: %v, %d machines", err, len(listed))
			}

			c.inject(srv)
			if err := p.Delete(ctx, []string{ms[0].ID}); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n := live(srv); n != 0 {
				t.Errorf("%d instances left", n)
			}
		})
	}
}

// TestPersistentThrottling throttles every call: each operation fails with
// a transient error after MaxAttempts, and nothing is half done.
func TestPersistentThrottling(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ctx := ctxT(t)
	ids := seed(srv, "acme", "c", 2)
	srv.Throttle(1 << 30)

	check := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s under throttling: no error", op)
		}
		var trans *reconcile.TransientError
		if !errors.As(err, &trans) || reconcile.Classify(err) != reconcile.ReactRetry {
			t.Errorf("%s: %v is not a reconcile.Transient error", op, err)
		}
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "RequestLimitExceeded" {
			t.Errorf("%s: %v does not carry RequestLimitExceeded", op, err)
		}
	}
	srv.ResetCalls()
	ms, err := p.Create(ctx, machineSpecs("c", "workers", 5, 3))
	check("Create", err)
	if len(ms) != 0 {
		t.Errorf("Create returned %d machines", len(ms))
	}
	if n := srv.TotalCalls(); n != 3 {
		t.Errorf("Create made %d calls, want 3 (MaxAttempts of the look-up)", n)
	}
	_, err = p.List(ctx)
	check("List", err)
	check("Delete", p.Delete(ctx, ids))

	if n := len(srv.Instances()); n != 2 {
		t.Errorf("%d instances, want the 2 seeded", n)
	}
	if n := live(srv); n != 2 {
		t.Errorf("%d live instances, want 2", n)
	}
}

// TestThrottledLaunchIsTransient lets the look-up through and throttles the
// launches for good: no instance, a transient error per machine.
func TestThrottledLaunchIsTransient(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	srv.OnCall("RunInstances", func(n int) {
		if n == 1 {
			srv.Throttle(1 << 30)
		}
	})
	ms, err := p.Create(ctxT(t), machineSpecs("c", "workers", 0, 2))
	if reconcile.Classify(err) != reconcile.ReactRetry || len(ms) != 0 || live(srv) != 0 {
		t.Errorf("Create: %v, %d machines, %d instances; want a transient error and nothing", err, len(ms), live(srv))
	}
}

// TestAdaptiveMode checks that the adaptive retry mode is wired in: it
// retries throttling too. (After throttling it also slows the client down on
// purpose, to about a call per second here, so the test makes one call and
// throttles it once.)
func TestAdaptiveMode(t *testing.T) {
	srv := newServer(t)
	seed(srv, "acme", "c", 3)
	p := newProvider(t, srv, "acme", withRetryMode(sdkaws.RetryModeAdaptive))
	srv.Throttle(1)
	ms, err := p.List(ctxT(t))
	if err != nil || len(ms) != 3 {
		t.Fatalf("List: %v, %d machines", err, len(ms))
	}
	if n := srv.Calls("DescribeInstances"); n != 2 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestUnknownRetryMode(t *testing.T) {
	srv := newServer(t)
	cfg := testConfig(srv, "acme")
	cfg.RetryMode = "eager"
	if _, err := aws.New(context.Background(), cfg); err == nil {
		t.Error("New with an unknown retry mode: no error")
	}
}

func TestRetryBackoffIsBounded(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme", withAttempts(5), func(c *aws.Config) { c.MaxBackoff = 5 * time.Millisecond })
	srv.Throttle(4)
	start := time.Now()
	if _, err := p.List(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("4 throttled attempts took %v; MaxBackoff is not applied", d)
	}
}

func TestContextCancelIsNotTransient(t *testing.T) {
	srv := newServer(t)
	p := newProvider(t, srv, "acme")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.List(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("List: %v, want context.Canceled", err)
	}
	if reconcile.Classify(err) == reconcile.ReactRetry {
		t.Errorf("a cancelled context is classified transient")
	}
}
