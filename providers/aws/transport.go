package aws

import (
	"io"
	"net/http"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// readOnlyBodies is the provider's HTTP client: the SDK's, with request
// bodies that expose only Read and Close.
//
// Why: smithy-go wraps each request body in a reader whose WriteTo returns
// io.EOF once the body is closed, and the SDK closes it as soon as the
// response arrives. After net/http has sent Content-Length bytes it reads the
// body once more to detect surplus bytes; when that read goes through
// WriteTo after the close, net/http takes the io.EOF for a failed write and
// drops the connection while the response is still being read, and the SDK
// retries a call that had succeeded. It takes a response that beats that
// final read (an endpoint on the same host, in practice), but it costs a
// retry token each time. Through Read, the final read is a clean end of
// file.
type readOnlyBodies struct {
	next sdkaws.HTTPClient
}

func (c readOnlyBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.next.Do(req)
	}
	r := *req
	r.Body = readOnlyBody{req.Body}
	return c.next.Do(&r)
}

type readOnlyBody struct{ rc io.ReadCloser }

func (b readOnlyBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b readOnlyBody) Close() error               { return b.rc.Close() }

// WithReadOnlyBodies wraps an SDK HTTP client (nil: the SDK's default) the
// way the provider's own client is wrapped, for other clients of an EC2
// endpoint such as tests of the protocol server.
func WithReadOnlyBodies(next sdkaws.HTTPClient) sdkaws.HTTPClient {
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	return readOnlyBodies{next: next}
}
