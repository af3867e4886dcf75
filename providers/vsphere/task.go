package vsphere

import (
	"context"
	"errors"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/types"
)

// wait waits for t to finish and returns its info. A task that failed
// returns a task.Error. When the waiting itself fails (the session dropped
// and took its property collector along, a connection broke) it waits again,
// up to three times: the task lives on in vCenter whatever happens to the
// waiter.
func (p *Provider) wait(ctx context.Context, t *object.Task) (*types.TaskInfo, error) {
	for attempt := 1; ; attempt++ {
		info, err := t.WaitForResult(ctx)
		if err == nil || isTaskError(err) || ctx.Err() != nil || attempt == 3 {
			return info, err
		}
		if info != nil && info.State == types.TaskInfoStateSuccess {
			// Finished; only tidying up the collector failed.
			return info, nil
		}
		p.logger(ctx).Warn("Waiting for a vCenter task failed; waiting again", "task", t.Reference().Value, "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

func isTaskError(err error) bool {
	var te task.Error
	return errors.As(err, &te)
}
