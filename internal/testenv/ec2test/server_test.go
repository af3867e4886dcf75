package ec2test_test

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
)

const image = "ami-0123456789abcdef0"

func newClient(t *testing.T, srv *ec2test.Server, akid, secret string) *ec2.Client {
	t.Helper()
	return ec2.New(ec2.Options{
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, ""),
		BaseEndpoint:     sdkaws.String(srv.URL),
		RetryMaxAttempts: 1,
		// The provider's wrapping keeps a request body's final read from
		// dropping the connection (see aws.WithReadOnlyBodies).
		HTTPClient: aws.WithReadOnlyBodies(nil),
	})
}

// TestErrorShape checks the raw wire: an unsigned request gets EC2's error
// document with the documented element names and HTTP status.
func TestErrorShape(t *testing.T) {
	srv := ec2test.New()
	defer srv.Close()
	form := url.Values{"Action": {"DescribeInstances"}, "Version": {ec2test.APIVersion}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
	var doc struct {
		XMLName xml.Name `xml:"Response"`
		Code    string   `xml:"Errors>Error>Code"`
		Message string   `xml:"Errors>Error>Message"`
		ID      string   `xml:"RequestID"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil || doc.Code != "AuthFailure" || doc.Message == "" || doc.ID == "" {
		t.Errorf("error document %q: %+v, %v", body, doc, err)
	}
}

func TestSignatureIsVerified(t *testing.T) {
	srv := ec2test.New()
	defer srv.Close()
	for _, c := range []struct {
		name, akid, secret, code string
	}{
		{"right keys", ec2test.AccessKeyID, ec2test.SecretAccessKey, ""},
		{"wrong secret", ec2test.AccessKeyID, "wrong", "SignatureDoesNotMatch"},
		{"unknown key", "AKIAUNKNOWNUNKNOWN00", ec2test.SecretAccessKey, "AuthFailure"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newClient(t, srv, c.akid, c.secret).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
			var ae smithy.APIError
			switch {
			case c.code == "" && err != nil:
				t.Errorf("DescribeInstances: %v", err)
			case c.code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != c.code):
				t.Errorf("DescribeInstances: %v, want %s", err, c.code)
			}
		})
	}
}

// TestProtocol drives each action through the SDK and checks EC2's
// documented behaviour.
func TestProtocol(t *testing.T) {
	srv := ec2test.New()
	defer srv.Close()
	srv.AddImage(image, "/dev/xvda")
	srv.AddSubnet("subnet-00000000000000001", "eu-west-1a")
	c := newClient(t, srv, ec2test.AccessKeyID, ec2test.SecretAccessKey)
	ctx := context.Background()
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return ""
	}
	run := func(token string, tags ...types.Tag) (*ec2.RunInstancesOutput, error) {
		in := &ec2.RunInstancesInput{
			ImageId: sdkaws.String(image), InstanceType: types.InstanceTypeT3Micro,
			MinCount: sdkaws.Int32(1), MaxCount: sdkaws.Int32(1), SubnetId: sdkaws.String("subnet-00000000000000001"),
			ClientToken: sdkaws.String(token),
		}
		if len(tags) > 0 {
			in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}}
		}
		return c.RunInstances(ctx, in)
	}
	tag := types.Tag{Key: sdkaws.String("team"), Value: sdkaws.String("a")}

	first, err := run("tok-1", tag)
	if err != nil {
		t.Fatal(err)
	}
	if st := first.Instances[0].State.Name; st != types.InstanceStateNamePending {
		t.Errorf("RunInstances state %q, want pending", st)
	}
	again, err := run("tok-1", tag)
	if err != nil || sdkaws.ToString(again.ReservationId) != sdkaws.ToString(first.ReservationId) ||
		sdkaws.ToString(again.Instances[0].InstanceId) != sdkaws.ToString(first.Instances[0].InstanceId) {
		t.Errorf("same client token: %v, %v; want the same reservation", err, again)
	}
	if _, err := run("tok-1"); code(err) != "IdempotentParameterMismatch" {
		t.Errorf("same token, other parameters: %v", err)
	}
	if _, err := run(strings.Repeat("x", 65)); code(err) != "InvalidParameterValue" {
		t.Errorf("65-character token: %v", err)
	}
	for range 11 {
		if _, err := run(""); err != nil {
			t.Fatal(err)
		}
	}

	// Paging: 12 instances, pages of 5; a filter on the tag finds one.
	var pages, total int
	pg := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: sdkaws.Int32(5)})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range out.Reservations {
			total += len(r.Instances)
		}
	}
	if pages != 3 || total != 12 {
		t.Errorf("%d pages, %d instances; want 3 and 12", pages, total)
	}
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdkaws.String("tag:team"), Values: []string{"a", "b"}},
		{Name: sdkaws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances[0].Tags) != 1 {
		t.Errorf("tag filter: %v, %+v", err, out)
	}
	out, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdkaws.String("tag:team"), Values: []string{"?"}},
		{Name: sdkaws.String("instance-id"), Values: []string{"i-*"}},
	}})
	if err != nil || len(out.Reservations) != 1 {
		t.Errorf("wildcard filter: %v, %+v", err, out)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{MaxResults: sdkaws.Int32(1001)}); code(err) != "InvalidParameterValue" {
		t.Errorf("MaxResults 1001: %v", err)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: sdkaws.String("bogus"), Values: []string{"x"}}}}); code(err) != "InvalidParameterValue" {
		t.Errorf("unknown filter: %v", err)
	}

	// Terminate: one unknown ID fails the whole call; known ones terminate.
	id := sdkaws.ToString(first.Instances[0].InstanceId)
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id, "i-0000000000000dead"}}); code(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("terminate with an unknown ID: %v", err)
	}
	if in, _ := srv.Instance(id); in.State != ec2test.StateRunning {
		t.Errorf("a failed terminate changed %s to %s", id, in.State)
	}
	term, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil || term.TerminatingInstances[0].CurrentState.Name != types.InstanceStateNameShuttingDown ||
		term.TerminatingInstances[0].PreviousState.Name != types.InstanceStateNameRunning {
		t.Errorf("terminate: %v, %+v", err, term)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000dead"}}); code(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("describe unknown ID: %v", err)
	}

	// Images.
	img, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{image}})
	if err != nil || sdkaws.ToString(img.Images[0].RootDeviceName) != "/dev/xvda" {
		t.Errorf("DescribeImages: %v, %+v", err, img)
	}
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-00000000000000bad"}}); code(err) != "InvalidAMIID.NotFound" {
		t.Errorf("unknown image: %v", err)
	}
}

func TestThrottleStatus(t *testing.T) {
	srv := ec2test.New()
	defer srv.Close()
	srv.Throttle(1)
	_, err := newClient(t, srv, ec2test.AccessKeyID, ec2test.SecretAccessKey).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	var ae smithy.APIError
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestLimitExceeded" || !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
		t.Errorf("throttled call: %v; want RequestLimitExceeded with HTTP 503", err)
	}
	if n := srv.Calls("DescribeInstances"); n != 1 {
		t.Errorf("%d calls counted, want 1", n)
	}
}
