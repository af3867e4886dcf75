// Package ec2test is an in-process EC2 endpoint for tests: an HTTP server on
// 127.0.0.1 that speaks the EC2 Query protocol (API version 2016-11-15) as AWS
// documents it, for the few actions fleetd's AWS provider makes.
//
// It mirrors the documented EC2 Query API shapes because no real EC2 peer runs
// here: requests are form-encoded POSTs (Action=...&Version=2016-11-15) signed
// with Signature Version 4, which the server verifies; responses are XML in the
// namespace http://ec2.amazonaws.com/doc/2016-11-15/ with the documented element
// names; errors are <Response><Errors><Error><Code/><Message/></Error></Errors>
// <RequestID/></Response> with the HTTP status EC2 uses for the code. The real
// aws-sdk-go-v2 client, with its signing, retries and XML parsing, talks to it.
//
// Supported actions: RunInstances (with ClientToken idempotency),
// DescribeInstances (filters, instance IDs, MaxResults/NextToken paging),
// TerminateInstances and DescribeImages. Knobs inject throttling,
// server errors, lost responses and describe lag, and every request is counted
// and recorded so tests can assert on what the server received.
package ec2test
