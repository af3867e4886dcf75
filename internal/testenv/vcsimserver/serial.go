package vcsimserver

import (
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// The simulator of govmomi v0.56.0 races with itself when VM tasks run at
// once on one datastore: a task that adds or removes a disk, or unregisters a
// VM, updates the datastore object under its lock, while a task that resolves
// a file path copies the whole datastore object without it. Under
// `go test -race` that is a reported data race in every test that deletes two
// machines at once. The serializer runs each VM task method, and every task
// it starts in turn (a destroy deletes the VM's files in a task of its own
// that nobody waits for), to its end under one mutex. Method delays happen
// before (see front), so slow tasks still overlap, and clients still wait for
// tasks as they would on vCenter.
type serializer struct {
	reg *simulator.Registry
	run sync.Mutex // held while a task method and its tasks run

	mu      sync.Mutex
	active  bool
	started []*simulator.Task
}

// serialMethods are the SOAP methods the serializer runs.
// Power operations touch no datastore and run at once.
var serialMethods = map[string]bool{
	"CloneVM_Task": true, "Destroy_Task": true, "ReconfigVM_Task": true, "CreateVM_Task": true,
	"UnregisterVM": true, "RelocateVM_Task": true,
}

// Reference, PutObject, UpdateObject and RemoveObject make the serializer a
// registry handler (simulator.RegisterObject) that sees every task put into
// the registry.
func (s *serializer) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "FleetdTaskSerializer", Value: "serializer-1"}
}

func (s *serializer) PutObject(_ *simulator.Context, obj mo.Reference) {
	t, ok := obj.(*simulator.Task)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active {
		s.started = append(s.started, t)
	}
}

func (s *serializer) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}
func (s *serializer) RemoveObject(*simulator.Context, types.ManagedObjectReference)         {}

// track switches tracking on or off and returns the tasks started since the
// last call.
func (s *serializer) track(on bool) []*simulator.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = on
	out := s.started
	s.started = nil
	return out
}

// do calls f and waits for every task started meanwhile.
func (s *serializer) do(f func()) {
	s.run.Lock()
	defer s.run.Unlock()
	s.track(true)
	f()
	for {
		tasks := s.track(true)
		if len(tasks) == 0 {
			break
		}
		for _, t := range tasks {
			waitTask(s.reg, t)
		}
	}
	s.track(false)
}

// waitTask waits for t to finish. simulator.Task.Wait polls every 10ms;
// this polls every millisecond, which matters when every task waits its turn.
func waitTask(reg *simulator.Registry, t *simulator.Task) {
	lock := &simulator.Context{} // a locking identity of its own, as Task.Wait uses
	for {
		var state types.TaskInfoState
		reg.WithLock(lock, t, func() { state = t.Info.State })
		if state == types.TaskInfoStateSuccess || state == types.TaskInfoStateError {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
