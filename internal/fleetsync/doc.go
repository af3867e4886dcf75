// Package fleetsync owns fleetd's one sync loop: fetch the fleet repo, read
// the commit's tree, load it, build the desired state with its safety facts
// from git history, read the previous status from the one place status
// lives, observe, plan, gate, apply, fold what apply did into the observed
// world, render the status and commit it only when a fact changed. `fleetd
// apply`, `fleetd plan`, `fleetd run` and the demo all run this loop; none
// has a copy of it.
//
// Safety facts (which commit removed a cluster's file, whether the cluster
// was protected in the last revision that declared it, when its file was
// created) come from git history, never from status files, which are a
// report anyone can edit. When history cannot tell, nothing is destroyed and
// the plan and status say why.
package fleetsync
