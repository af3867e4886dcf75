package reconcile

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestBoundCallNamesTheCallThatHung(t *testing.T) {
	for _, c := range []struct {
		name string
		ret  func(ctx context.Context) error
	}{
		{"returns the context's error", func(ctx context.Context) error { return ctx.Err() }},
		// net/http returns the context's cause: no cycle may come of it.
		{"returns the context's cause", func(ctx context.Context) error { return fmt.Errorf("post: %w", context.Cause(ctx)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := BoundCall(context.Background(), 10*time.Millisecond, "provider dc1: list machines", func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, c.ret(ctx)
			})
			var hung *HungError
			if !errors.As(err, &hung) || err.Error() != "provider dc1: list machines: no answer within 10ms" || Classify(err) != ReactRetry {
				t.Fatalf("BoundCall: %v (%v)", err, Classify(err))
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.As(hung.Err, new(*HungError)) {
				t.Errorf("the call's own error is lost: %v", hung.Err)
			}
		})
	}
	_, err := BoundCall(context.Background(), time.Minute, "x", func(context.Context) (int, error) { return 0, Stalled(errors.New("bad spec")) })
	if Classify(err) != ReactStall || err.Error() != "bad spec" {
		t.Fatalf("a call that fails by itself keeps its error: %v", err)
	}
}
