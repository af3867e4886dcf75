// Package aws implements reconcile.Provider on Amazon EC2 with aws-sdk-go-v2.
//
// Every instance and volume it launches carries the fleet's tags (TagFleet
// and friends); it lists, and terminates, only instances with the fleet's
// TagFleet. List is one paginated DescribeInstances query for the fleet,
// Create is one RunInstances per machine with a client token derived from
// the machine's name, and Delete is TerminateInstances in batches. Throttling
// and 5xx responses are retried by the SDK's retryer; what persists becomes a
// reconcile.Transient error. The package calls EC2 through EC2API, a narrow
// interface over the SDK client; its tests run the real client against
// ec2test, an EC2 Query protocol server.
package aws
