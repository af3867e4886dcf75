package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// maxTerminateIDs is the most instance IDs one TerminateInstances call takes.
const maxTerminateIDs = 1000

// maxNotFoundRounds bounds how often one batch is narrowed down after
// InvalidInstanceID.NotFound.
const maxNotFoundRounds = 3

// Delete terminates the instances with the given IDs.
//
// It first describes them all: an instance that is gone or terminated is a
// success, and an instance without the fleet's tag is refused, in which case
// nothing at all is terminated and the error wraps ErrNotOwned for each. The
// rest is terminated, at most 1,000 IDs per call. EC2 fails a whole call
// when one ID in it no longer exists (InvalidInstanceID.NotFound); the batch
// is then described again and retried with the instances that still exist.
//
// Delete is idempotent: deleting an instance twice, or one that never
// existed, is a success.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return nil
	}
	found, err := p.describeIDs(ctx, ids)
	if err != nil {
		return fail("delete", "instances: describe", err)
	}
	var refused []error
	var targets []string
	for _, id := range ids {
		in, ok := found[id]
		switch {
		case !ok:
			p.logger(ctx).DebugContext(ctx, "Instance already gone", "instance", id)
		case !p.owned(&in):
			p.logger(ctx).WarnContext(ctx, "Refusing to terminate an instance the fleet does not own", "instance", id)
			refused = append(refused, fmt.Errorf("aws: delete %s: %w", id, ErrNotOwned))
		case isGone(&in):
			p.logger(ctx).DebugContext(ctx, "Instance already terminated", "instance", id)
		default:
			targets = append(targets, id)
		}
	}
	if len(refused) > 0 {
		return errors.Join(refused...)
	}
	for batch := range slices.Chunk(targets, maxTerminateIDs) {
		if err := p.terminate(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// terminate terminates one batch of owned instances.
func (p *Provider) terminate(ctx context.Context, batch []string) error {
	for round := 1; ; round++ {
		p.logger(ctx).InfoContext(ctx, "Terminating instances", "count", len(batch), "instances", batch)
		_, err := p.api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: batch})
		if err == nil {
			return nil
		}
		if apiCode(err) != codeInstanceNotFound || round == maxNotFoundRounds {
			return fail("delete", fmt.Sprintf("%d instances", len(batch)), err)
		}
		// One of the batch vanished since it was described, and EC2 failed
		// the whole call: keep the instances that still exist.
		found, derr := p.describeIDs(ctx, batch)
		if derr != nil {
			return fail("delete", "instances: describe", derr)
		}
		var next []string
		for _, id := range batch {
			if in, ok := found[id]; ok && p.owned(&in) && !isGone(&in) {
				next = append(next, id)
			}
		}
		if len(next) == 0 {
			return nil
		}
		batch = next
	}
}

// describeIDs describes instances by ID. It filters on instance-id rather
// than passing InstanceIds, which would fail the whole call for one unknown
// ID; an unknown ID is simply absent from the result.
func (p *Provider) describeIDs(ctx context.Context, ids []string) (map[string]types.Instance, error) {
	insts, err := p.describeEach(ctx, "instance-id", ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]types.Instance, len(insts))
	for _, in := range insts {
		out[sdkaws.ToString(in.InstanceId)] = in
	}
	return out, nil
}

func uniqueIDs(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
