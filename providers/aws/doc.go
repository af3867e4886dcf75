// Package aws implements reconcile.Provider on Amazon EC2 with aws-sdk-go-v2.
package aws
